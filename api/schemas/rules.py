"""The Suricata-format rule set (``rules/``) over HTTP: list with provenance, enable/disable, update."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import SEARCH_MAX, PageParams, StrictModel

RuleStatus = Literal["loaded", "unsupported", "invalid", "disabled"]


class RuleQuery(PageParams):
    unsupported: bool = Field(False, description="only rules the engine cannot evaluate (or invalid ones)")
    status: RuleStatus | None = None
    q: str | None = Field(None, max_length=SEARCH_MAX, description="substring of the message (literal)")


class RuleRecord(BaseModel):
    gid: int
    sid: int
    rev: int
    msg: str
    action: str
    enabled: bool
    status: RuleStatus
    reason: str = Field(description="why the engine does not evaluate it")
    source: str = Field(description="the update.yaml source it came from")
    file: str
    location: str = Field(description="where a downloaded source was fetched from; empty for on-disk ones")


class RulePage(BaseModel):
    items: list[RuleRecord]
    total: int = Field(ge=0)
    limit: int
    offset: int
    active: bool = Field(description="records of the built rule set (`rules update`); else the shipped rules")


class RuleToggled(BaseModel):
    gid: int
    sid: int
    enabled: bool
    changed: bool = Field(description="false when the rule was already in that list")
    note: str = Field(examples=["applied by the next rules update"])


class UpdateRequest(StrictModel):
    comment: str = Field("", max_length=2000, description="why; kept in the audit log")


class UpdateOut(BaseModel):
    rules: int
    enabled: int
    loaded: int
    unsupported: int
    invalid: int
    by_source: dict[str, int]
