"""The anomaly baseline (``sensor/detect``) over HTTP: status, accept an alert, reset, diff."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from api.schemas.common import StrictModel


class BaselineSensor(BaseModel):
    """The anomaly observer of the sensor running in this server (its ``baseline`` summary section)."""

    mode: Literal["learning", "detecting"]
    first_event: float | None
    learned_until: float | None
    revision: int
    findings: int
    alerts: int


class BaselineStatus(BaseModel):
    configured: bool = Field(description="a baseline file is configured (`serve --baseline FILE`)")
    path: str | None
    exists: bool = Field(description="the file has been saved at least once")
    mode: Literal["learning", "detecting", "stored", "none"] = Field(
        description="the running sensor's mode; `stored` when only the file is there; `none` without either"
    )
    revision: int = Field(ge=0)
    created: float = Field(description="packet time of the first learned event")
    updated: float = Field(description="packet time of the last change")
    counts: dict[str, int] = Field(description="learned entries per section", examples=[{"edge": 3}])
    relearn: dict[str, float] = Field(description="assets learned again at the next start: ip -> seconds")
    sensor: BaselineSensor | None = None


class AcceptRequest(StrictModel):
    alert_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_.:-]+$",
        description="an anomaly alert of the store",
    )
    comment: str = Field("", max_length=2000, description="why; kept in the audit log")


class Accepted(BaseModel):
    alert_id: str
    rule: str
    facts: int = Field(ge=0, description="facts the alert carried")
    added: int = Field(ge=0, description="facts the baseline did not know yet")
    revision: int
    live: bool = Field(description="the running sensor's baseline was updated too")


def _text_only(value: Any) -> Any:
    """An address must be written as text: pydantic would otherwise take ``0`` or ``false`` as 0.0.0.0."""
    if not isinstance(value, str):
        raise ValueError("an IP address is a string")
    return value


TextIp = Annotated[IPv4Address | IPv6Address, BeforeValidator(_text_only)]


class AssetReset(StrictModel):
    ip: TextIp = Field(description="the asset to forget", examples=["10.10.1.20"])
    relearn: float | None = Field(
        None, gt=0, le=365 * 86400, description="learn the asset again for this many seconds (packet time)"
    )


class ResetRequest(StrictModel):
    asset: AssetReset | None = Field(None, description="forget only this asset; everything when absent")
    comment: str = Field("", max_length=2000, description="why; kept in the audit log")


class ResetDone(BaseModel):
    removed: int = Field(ge=0)
    detail: str
    revision: int
    live: bool


class BaselineDiff(BaseModel):
    """Changes of the running sensor's baseline since it was saved (or of the last saved revision)."""

    against: Literal["saved", "last_revision", "none"]
    revision: int
    added: list[str]
    removed: list[str]
    changed: list[str]
    detail: dict[str, Any] = Field(default_factory=dict)
