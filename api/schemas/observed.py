"""Certificates devices presented on the wire, with the wire↔PKI judgement (api/pki/observed.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.common import SEARCH_MAX, PageParams

IP_FIELD_PATTERN = r"^[0-9A-Fa-f:.]+$"


class ObservedPresenter(BaseModel):
    """One asset presenting the certificate, with the wire↔PKI judgement recorded for it."""

    ip: str
    status: str = Field(
        description="managed, unmanaged, self_signed, revoked_in_use, expired_in_use, expiring_soon, "
        "san_uri_mismatch, renewed_old_in_use; not_judged when the sensor ran without --pki-dir",
        examples=["managed"],
    )
    findings: list[str]
    roles: list[str] = Field(description="how the asset used it: server and/or client")
    sources: list[str] = Field(description="where it was seen (tls.server, opcua.opn, ...)")
    app_proto: str | None = None
    first_seen: str | None = Field(None, description="ISO 8601, packet time")
    last_seen: str | None = Field(None, description="ISO 8601, packet time")


class IssuedRecord(BaseModel):
    serial: str
    status: str
    profile: str
    not_after: str


class ObservedCertificate(BaseModel):
    sha256: str
    subject: str
    issuer: str
    serial: str | None = None
    not_after: str | None
    self_signed: bool
    san_dns: list[str]
    san_ips: list[str]
    san_uris: list[str]
    status: str = Field(description="the most serious status over every presenter")
    findings: list[str] = Field(description="findings over every presenter")
    presenters: list[ObservedPresenter]
    sources: list[str] = Field(description="where it was seen (tls.server, opcua.opn, ...)")
    assets: list[str] = Field(description="assets that presented it")
    issued_here: bool = Field(description="issued by this server's CA")
    issued: IssuedRecord | None = Field(None, description="this PKI's record of it, when issued here")


class ObservedQuery(PageParams):
    q: str | None = Field(None, max_length=SEARCH_MAX, description="substring of subject or issuer")
    ip: str | None = Field(None, max_length=45, pattern=IP_FIELD_PATTERN, description="presenting asset")
    status: str | None = Field(
        None, max_length=32, pattern=r"^[a-z_]+$", description="a presenter's status", examples=["managed"]
    )
