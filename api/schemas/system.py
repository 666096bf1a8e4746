"""Health and status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.roles import Role


class Health(BaseModel):
    status: Literal["ok"] = Field(examples=["ok"])
    version: str = Field(examples=["0.1.0"])


StatusSource = Literal["sensor", "store", "none"]


class Drops(BaseModel):
    kernel: int = Field(ge=0, description="frames the kernel dropped before the sensor read them")
    queue: int = Field(ge=0, description="frames dropped because the pipeline did not keep up")


class SensorInfo(BaseModel):
    running: bool
    mode: Literal["live", "replay", "none"] = Field(
        description="live SPAN capture, file replay, or no sensor"
    )
    interface: str | None = Field(default=None, description="the capture interfaces, joined with ','")
    interfaces: list[str] = Field(
        default_factory=list, description="the capture interfaces (several: a TAP's ports, SPAN sessions)"
    )
    finished: bool = Field(description="a replay has processed every file / a capture has stopped")


class Status(BaseModel):
    """Sensor counters (as in the replay summary) and versions."""

    sensor: SensorInfo
    source: StatusSource = Field(
        description="where the counters come from: the sensor running in this server, the store (saved "
        "by the last sensor run that wrote to it, e.g. `zonewarden replay --db`), or nowhere (all zero)"
    )
    saved_at: float | None = Field(
        None, description="with source=store: when that run last saved them (epoch s, wall clock)"
    )
    packets: int = Field(ge=0, examples=[58])
    bytes: int = Field(ge=0)
    flows: int = Field(ge=0)
    decode_errors: int = Field(ge=0)
    gaps: int = Field(ge=0, description="TCP reassembly gaps (bytes never seen)")
    drops: Drops
    capture: dict[str, int] = Field(description="capture counters of every source")
    capture_by_interface: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="live capture: each interface's capture counters (their sum is capture)",
    )
    protocols: dict[str, dict[str, Any]] = Field(
        description="per-protocol counters (modbus, opcua, mqtt, tls)"
    )
    alerts: dict[str, Any] = Field(description="alerts raised, by category and by rule")
    versions: dict[str, str] = Field(examples=[{"zonewarden": "0.1.0", "python": "3.11.2"}])


class Me(BaseModel):
    """The caller, as its token says."""

    role: Role
    token_id: str = Field(description="the token's id (12 hex digits, shown in the token list)")
    token_prefix: str = Field(
        description="how the token starts (the rest is secret)", examples=["zw_0123456789ab_"]
    )
    token_name: str
    permissions: list[str] = Field(
        description="what the role may do (see the role table)", examples=[["alerts:write", "read"]]
    )
