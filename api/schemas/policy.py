"""The zone/conduit policy (``policy/``) over HTTP: current, validate, replace, compliance, learn, export.

Policy text travels as a JSON string (``{"yaml": "..."}``): the API takes JSON bodies only, and the
line numbers of every problem refer to that text.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import StrictModel

# A policy file may be up to policy.load.MAX_FILE_BYTES (8 MiB) on disk; through the API the request
# body cap (Settings.max_body_bytes) is the binding limit, so this only documents a sane bound.
MAX_POLICY_CHARS = 1024 * 1024

POLICY_EXAMPLE = """\
version: 1
site: loopback
default: deny
zones:
  - id: loopback
    members: [127.0.0.0/8]
    intra_zone: deny
conduits: []
"""

ExportFormat = Literal["nftables", "suricata", "csv", "markdown"]


class PolicyText(StrictModel):
    """Policy YAML to check."""

    yaml: str = Field(
        min_length=1,
        max_length=MAX_POLICY_CHARS,
        description="the policy file's text (YAML, version 1; `zonewarden policy schema`)",
        examples=[POLICY_EXAMPLE],
    )


class PolicyReplace(PolicyText):
    """A new policy for this server: validated, written atomically, hot-reloaded into the sensor."""

    comment: str = Field("", max_length=2000, description="why; kept in the audit log")


class LintFinding(BaseModel):
    line: int = Field(ge=1)
    code: str = Field(examples=["weak_security_level"])
    message: str
    text: str = Field(description="`file:line: warning: code: message`, as `zonewarden policy lint` prints")


class PolicyValidation(BaseModel):
    """A valid policy: its size and the lint warnings (a policy with problems is a 422 listing them)."""

    ok: Literal[True] = True
    zones: int = Field(ge=0)
    conduits: int = Field(ge=0)
    findings: list[LintFinding]


class PolicyCurrent(BaseModel):
    """The policy this server checks traffic against."""

    path: str = Field(description="the policy file on the server (set by `serve --policy`)")
    yaml: str = Field(description="the file's text")
    policy: dict[str, Any] = Field(description="the parsed policy (the file's keys, defaults filled in)")
    sha256: str = Field(description="SHA-256 of the file's text")
    zones: int = Field(ge=0)
    conduits: int = Field(ge=0)
    modified_at: float = Field(description="the file's modification time (epoch s)")
    loaded_at: float | None = Field(
        description="when the running sensor last (re)loaded it through this server (epoch s); null "
        "without a sensor"
    )
    sensor_reloads: int | None = Field(description="policy swaps in the running sensor; null without one")


class PolicyReplaced(PolicyCurrent):
    reloaded: bool = Field(description="the running sensor now checks traffic against the new policy")
    findings: list[LintFinding]


class LearnRequest(StrictModel):
    site: str = Field(
        "",
        max_length=100,
        pattern=r"^[A-Za-z0-9 _.:/@()+,-]*$",
        description="the `site:` of the proposal",
        examples=["plant-1"],
    )


class LearnedPolicy(BaseModel):
    """A proposal (not installed: review it, then PUT /policy)."""

    yaml: str = Field(description="the proposed policy with comments saying what each entry was learned from")
    sources: list[str] = Field(description="what the running sensor observed (capture files or interface)")
    hosts: int = Field(ge=0)
    host_pairs: int = Field(ge=0)


class ExportQuery(StrictModel):
    format: ExportFormat = Field(description="nftables ruleset, Suricata rules, CSV or Markdown tables")
    sid_base: int = Field(
        9_300_000, ge=1, le=4_000_000_000, description="first SID of the Suricata rules (format=suricata)"
    )


class Violation(BaseModel):
    model_config = {"extra": "allow"}

    rule: str = Field(examples=["policy:scada-to-control:function_not_allowed"])
    src_ip: str
    dest_ip: str
    dest_port: int
    count: int
    reason: str
    src_zone: str
    dest_zone: str
    conduit: str
    first_ts: float
    last_ts: float
    severity: int
    signature: str
    evidence: Any = None
    # what all the merged alerts saw (dest_port, signature and evidence are the earliest alert's)
    alerts: int = Field(0, description="policy alerts merged into this violation")
    edges: list[dict[str, Any]] = Field(
        default_factory=list,
        description="communications {protocol, port}, first seen first, as the map names",
    )
    protocols: list[str] = Field(default_factory=list)
    dest_ports: list[int] = Field(default_factory=list)
    edges_truncated: bool = False
    operations: list[str] = Field(default_factory=list, description="distinct operations, first seen first")
    operations_truncated: bool = False


class ComplianceReport(BaseModel):
    """``zonewarden policy check --json``, from this server's data.

    ``violations`` are the policy alerts of the store, merged per (rule, initiator, responder) exactly
    as the CLI merges them. The per-conduit counters (operations allowed and denied, traffic with no
    conduit, allow entries never used) exist only in the policy observer of a sensor running in this
    server (they are not stored): without one they are null and ``summary.counters`` says so.
    """

    violations: list[Violation]
    conduits: dict[str, dict[str, Any]] | None
    no_conduit: list[dict[str, Any]] | None
    intra_zone_allowed: dict[str, int] | None
    default_allowed: list[dict[str, Any]] | None
    unused_rules: list[dict[str, Any]] | None
    summary: dict[str, Any] = Field(
        description="policy, sources (`violations`: store, `counters`: sensor or unavailable), "
        "operations, violations, alerts"
    )
