"""The audit log."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import SEARCH_MAX, PageParams


class AuditQuery(PageParams):
    source: Literal["api", "pki"] = Field("api", description="the API's log, or the PKI directory's")
    who: str | None = Field(None, max_length=SEARCH_MAX, description="substring of the actor (literal)")
    what: str | None = Field(None, max_length=SEARCH_MAX, description="substring of the action (literal)")


class AuditEntry(BaseModel):
    seq: int = Field(examples=[42])
    ts: str = Field(examples=["2024-05-01T10:00:00.000000+00:00"])
    who: str = Field(examples=["token:3f9a0c1d2e4b:analyst"])
    what: str = Field(examples=["alerts.ack"])
    object: str
    result: str = Field(examples=["ok 200"])
    prev_hash: str
    hash: str


class AuditProblemOut(BaseModel):
    seq: int
    kind: str
    detail: str


class AuditVerification(BaseModel):
    source: Literal["api", "pki"]
    intact: bool
    records: int
    head_seq: int
    head_hash: str = Field(description="keep this elsewhere: it anchors the chain against tail deletion")
    problems: list[AuditProblemOut]
