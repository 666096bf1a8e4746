"""The device PKI (``api.pki``) over HTTP."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import SEARCH_MAX, PageParams, StrictModel

ProfileName = Literal[
    "opcua-app", "mqtt-broker", "mqtt-client", "modbus-security", "tls-server", "tls-client"
]
ReasonName = Literal[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
]
MAX_CSR_CHARS = 96 * 1024  # PEM of the CA's 64 KiB CSR cap, with room for line breaks

CSR_EXAMPLE = "-----BEGIN CERTIFICATE REQUEST-----\nMIIC...\n-----END CERTIFICATE REQUEST-----\n"


class CaCertificate(BaseModel):
    subject: str
    serial: str = Field(description="lower-case hex")
    not_before: str
    not_after: str
    sha256: str


class CaInfo(BaseModel):
    root: CaCertificate
    issuing: CaCertificate
    key_kind: str = Field(examples=["rsa-3072"])
    max_validity_days: int
    crl_days: int
    san_ip_networks: list[str]
    san_dns_suffixes: list[str]
    profiles: list[str]
    can_issue: bool = Field(description="the CA keys are unlocked in this server")


class CertificateQuery(PageParams):
    status: Literal["valid", "revoked", "expired"] | None = None
    profile: ProfileName | None = None
    q: str | None = Field(None, max_length=SEARCH_MAX, description="substring of subject or SANs (literal)")


class CertificateOut(BaseModel):
    serial: str = Field(examples=["5f3a9c..."])
    status: Literal["valid", "revoked", "expired"]
    profile: str
    subject: str
    sans: list[str]
    key_type: str
    not_before: str
    not_after: str
    revoked_at: str | None
    revocation_reason: str | None
    key_generated: bool
    renewal_of: int | None
    issuer: str
    sha256: str


class CertificateDetail(CertificateOut):
    pem: str


class IssueRequest(StrictModel):
    csr: str = Field(
        min_length=1, max_length=MAX_CSR_CHARS, description="PKCS#10 request, PEM", examples=[CSR_EXAMPLE]
    )
    profile: ProfileName = Field(examples=["opcua-app"])
    days: int | None = Field(None, ge=1, le=3650)
    role: str | None = Field(None, min_length=1, max_length=128, description="Modbus/TCP Security role")


class RenewRequest(StrictModel):
    csr: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CSR_CHARS,
        description="the new key's CSR (PEM); without one the current public key is kept",
    )
    days: int | None = Field(None, ge=1, le=3650)
    revoke_old: bool = Field(False, description="revoke the old certificate (reason superseded)")


class RevokeRequest(StrictModel):
    reason: ReasonName = Field("unspecified", examples=["keyCompromise"])


class IssuedOut(BaseModel):
    serial: str
    subject: str
    not_after: str
    certificate_pem: str
    chain_pem: str = Field(description="issuing CA then root CA")


class RevocationOut(BaseModel):
    serial: str
    reason: str
    crl_number: int
