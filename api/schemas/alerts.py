"""Alerts: list filters, the alert document, and the policy status of a communication (its alerts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.schemas.common import SEARCH_MAX, PageParams

AlertStatus = Literal["open", "acknowledged", "closed"]
# A window of packet time longer than this is refused (HOSTILE_INPUTS A8: "a time range of 100 years").
MAX_TIME_RANGE_SECONDS = 10 * 366 * 86400
EPOCH_MAX = 2**33  # seconds: the year 2242
IP_FIELD_PATTERN = r"^[0-9A-Fa-f:.]+$"
FLOW_ID_DOC = (
    "the flow's 64-bit id as a decimal string (JSON numbers lose precision past 2^53 in JavaScript); "
    "EVE files and sinks keep it an integer, as Suricata does"
)


class AlertQuery(PageParams):
    """``GET /alerts`` filters; every one is matched literally (no patterns, HOSTILE_INPUTS A9)."""

    status: AlertStatus | None = None
    category: str | None = Field(None, max_length=100, examples=["policy"])
    rule: str | None = Field(None, max_length=300, examples=["policy:scada-to-control:function_not_allowed"])
    severity: int | None = Field(None, ge=1, le=255, description="exact severity (1 high, 2 medium, 3 low)")
    ip: str | None = Field(
        None, max_length=45, pattern=IP_FIELD_PATTERN, description="source or destination address"
    )
    src_ip: str | None = Field(None, max_length=45, pattern=IP_FIELD_PATTERN)
    dest_ip: str | None = Field(None, max_length=45, pattern=IP_FIELD_PATTERN)
    zone: str | None = Field(
        None, max_length=100, description="source or destination zone, as the policy recorded it"
    )
    since: float | None = Field(
        None, ge=0, le=EPOCH_MAX, description="only alerts last seen at/after this packet time (epoch s)"
    )
    until: float | None = Field(
        None,
        ge=0,
        le=EPOCH_MAX,
        description="only alerts first seen at/before this packet time (epoch s); at most 10 years after "
        "`since` (422 otherwise)",
    )
    q: str | None = Field(
        None,
        max_length=SEARCH_MAX,
        description="case-insensitive substring of the id, signature, rule, category, addresses, zones, "
        "conduit or protocol; taken literally, never as a pattern",
        examples=["write_single_coil"],
    )

    @model_validator(mode="after")
    def _bounded_range(self) -> AlertQuery:
        if self.since is not None and self.until is not None:
            if self.until < self.since:
                raise ValueError("until is before since")
            if self.until - self.since > MAX_TIME_RANGE_SECONDS:
                raise ValueError("a time range spans at most 10 years")
        return self


class Alert(BaseModel):
    """One alert as stored: the EVE fields, triage state and ``seq``, its place in the store's insertion
    order (the alert stream's event id)."""

    model_config = ConfigDict(extra="allow")

    alert_id: str
    ts: float
    last_ts: float
    rule: str
    signature: str
    category: str
    severity: int
    signature_id: int
    status: AlertStatus
    count: int
    flow_id: str | None = Field(None, description=FLOW_ID_DOC, examples=["9032027781224345592"])
    seq: int = Field(0, ge=0, description="insertion order: bumped whenever the alert changes")
    evidence: Any = None
    eve: dict[str, Any] = Field(
        {}, description="the EVE record (its flow_id as a string here, like the alert's own)"
    )


def api_alert(row: dict[str, Any]) -> dict[str, Any]:
    """A stored alert as the API sends it: 64-bit flow ids as text (in the row and its EVE copy)."""
    out = dict(row)
    if out.get("flow_id") is not None:
        out["flow_id"] = str(out["flow_id"])
    eve = out.get("eve")
    if isinstance(eve, dict) and isinstance(eve.get("flow_id"), int):
        out["eve"] = {**eve, "flow_id": str(eve["flow_id"])}
    return out


class PolicyAlertGroup(BaseModel):
    conduit: str = Field(description="the conduit the operation crossed ('' when none allows it)")
    rule: str = Field(examples=["policy:scada-to-control:function_not_allowed"])
    alerts: int = Field(ge=0, description="alert rows")
    count: int = Field(ge=0, description="violations those alerts counted")
    open: int = Field(ge=0, description="alerts not closed")
    last_ts: float


class EdgePolicy(BaseModel):
    """Whether the policy was violated on this communication (client, server, protocol, port)."""

    status: Literal["violation", "closed", "allowed", "unknown"] = Field(
        description="violation: a policy alert not closed; closed: every one closed; allowed: a policy "
        "is configured and no alert was raised; unknown: no alert and no policy configured"
    )
    alerts: list[PolicyAlertGroup] = Field(description="policy alerts on it, by conduit and rule")
