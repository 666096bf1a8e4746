"""``/api/v1/pki``: the device CA (``api.pki``) — CA info, issue from a CSR, list, get, renew, revoke, CRLs
and the trust bundle.

The CA keys are decrypted once when the app is built (``Settings.pki_passphrase_file``) and kept in
memory; each request opens the PKI directory afresh (SQLite connections must not cross threads) with
the caller as the audit actor, so the PKI's own audit log names the token that issued or revoked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI, Query, Request, Response
from fastapi import Path as PathParam

from api.auth import Permission, Principal
from api.deps import get_principal, set_audit
from api.errors import ApiError, not_found
from api.pki.ca import CaDirectory, CertificateAuthority, PrivateKey, cert_pem, iso, sha256_hex, utc_now
from api.pki.cli import read_passphrase
from api.pki.crl import parse_serial
from api.pki.errors import PkiError
from api.pki.profiles import PROFILES
from api.pki.store import CertificateRow
from api.routes.common import guarded, resource_router
from api.schemas.common import Page
from api.schemas.pki import (
    CaCertificate,
    CaInfo,
    CertificateDetail,
    CertificateOut,
    CertificateQuery,
    IssuedOut,
    IssueRequest,
    RenewRequest,
    RevocationOut,
    RevokeRequest,
)
from api.settings import Settings

logger = logging.getLogger(__name__)

router = resource_router("pki", "/pki")

# RFC 5280 §4.1.2.2: positive, at most 20 octets in DER, so below 2**159: 39 hex digits after a leading
# digit of at most 7. Anything else (zero, negative, longer) is 422 before a route runs (A12).
SERIAL_PATTERN = r"^0*([1-7][0-9a-fA-F]{39}|[1-9a-fA-F][0-9a-fA-F]{0,38})$"
Serial = Annotated[
    str,
    PathParam(
        max_length=64, pattern=SERIAL_PATTERN, description="certificate serial, hex", examples=["5f3a9c0d"]
    ),
]
PEM_TYPE = "application/x-pem-file"


@dataclass(frozen=True, slots=True)
class CaKeys:
    root: PrivateKey
    issuing: PrivateKey


def setup(app: FastAPI, settings: Settings) -> None:
    """Unlock the CA once, when configured with a passphrase file; without one the PKI is read-only."""
    app.state.ca_keys = None
    if settings.pki_dir is None or settings.pki_passphrase_file is None:
        return
    passphrase = read_passphrase(str(settings.pki_passphrase_file))
    with CaDirectory(settings.pki_dir, "api:startup") as cadir:
        ca = cadir.unlock(passphrase)
        app.state.ca_keys = CaKeys(ca.root_key, ca.issuing_key)


def pki_dir(request: Request) -> Path:
    settings: Settings = request.app.state.settings
    if settings.pki_dir is None:
        raise ApiError(503, "pki_not_configured", "this server has no PKI directory")
    return settings.pki_dir


@contextlib.contextmanager
def open_directory(request: Request) -> Iterator[CaDirectory]:
    principal: Principal = get_principal(request)
    cadir = CaDirectory(pki_dir(request), principal.actor)
    try:
        yield cadir
    finally:
        cadir.close()


def authority(request: Request, cadir: CaDirectory) -> CertificateAuthority:
    keys: CaKeys | None = request.app.state.ca_keys
    if keys is None:
        raise ApiError(503, "ca_locked", "the CA keys are not unlocked in this server")
    return CertificateAuthority(cadir, keys.root, keys.issuing)


def _ca_cert(cadir: CaDirectory, issuing: bool) -> CaCertificate:
    cert = cadir.issuing_cert if issuing else cadir.root_cert
    return CaCertificate(
        subject=cert.subject.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=iso(cert.not_valid_before_utc),
        not_after=iso(cert.not_valid_after_utc),
        sha256=sha256_hex(cert),
    )


def _out(row: CertificateRow, now: str) -> CertificateOut:
    return CertificateOut(**row.as_dict(now))


def find_row(cadir: CaDirectory, serial_text: str) -> CertificateRow:
    """The row of a serial issued by this CA (or the root); PkiError 404/422 otherwise."""
    serial = parse_serial(serial_text)
    row = cadir.store.get(cadir.issuer, serial) or cadir.store.get(
        cadir.root_cert.issuer.rfc4514_string(), serial
    )
    if row is None:
        raise not_found("certificate")
    return row


def issued_out(cadir: CaDirectory, cert_serial: str, certificate: object) -> IssuedOut:
    from cryptography import x509

    assert isinstance(certificate, x509.Certificate)
    return IssuedOut(
        serial=cert_serial,
        subject=certificate.subject.rfc4514_string(),
        not_after=iso(certificate.not_valid_after_utc),
        certificate_pem=cert_pem(certificate).decode("ascii"),
        chain_pem=cadir.chain_pem().decode("ascii"),
    )


@router.get("/ca", summary="the root and issuing CA", response_model=CaInfo, **guarded(Permission.READ, 503))
def ca_info(request: Request) -> CaInfo:
    with open_directory(request) as cadir:
        config = cadir.config
        return CaInfo(
            root=_ca_cert(cadir, issuing=False),
            issuing=_ca_cert(cadir, issuing=True),
            key_kind=config.key_kind,
            max_validity_days=config.max_validity_days,
            crl_days=config.crl_days,
            san_ip_networks=[str(n) for n in config.ip_networks],
            san_dns_suffixes=list(config.dns_suffixes),
            profiles=list(PROFILES),
            can_issue=request.app.state.ca_keys is not None,
        )


@router.get(
    "/certificates",
    summary="certificates this CA issued",
    response_model=Page[CertificateOut],
    **guarded(Permission.READ, 503),
)
def list_certificates(request: Request, params: Annotated[CertificateQuery, Query()]) -> Page[CertificateOut]:
    now = iso(utc_now())
    with open_directory(request) as cadir:
        rows = [_out(r, now) for r in cadir.store.all()]
    if params.status:
        rows = [r for r in rows if r.status == params.status]
    if params.profile:
        rows = [r for r in rows if r.profile == params.profile]
    if params.q:
        needle = params.q.lower()
        rows = [r for r in rows if needle in r.subject.lower() or any(needle in s.lower() for s in r.sans)]
    page = rows[params.offset : params.offset + params.limit]
    return Page(items=page, total=len(rows), limit=params.limit, offset=params.offset)


@router.post(
    "/certificates",
    status_code=201,
    summary="issue a certificate from a CSR",
    response_model=IssuedOut,
    **guarded(Permission.PKI_WRITE, 503),
)
def issue(request: Request, body: IssueRequest) -> IssuedOut:
    set_audit(request, "pki.issue", f"profile={body.profile}")
    with open_directory(request) as cadir:
        issued = authority(request, cadir).issue_csr(
            body.csr.encode("utf-8"), body.profile, days=body.days, role=body.role
        )
        set_audit(request, "pki.issue", f"serial:{issued.serial}", f"profile={body.profile}")
        return issued_out(cadir, issued.serial, issued.certificate)


@router.get(
    "/certificates/{serial}",
    summary="one certificate, with its PEM",
    response_model=CertificateDetail,
    **guarded(Permission.READ, 404, 503),
)
def get_certificate(request: Request, serial: Serial) -> CertificateDetail:
    with open_directory(request) as cadir:
        row = find_row(cadir, serial)
    from cryptography import x509

    pem = x509.load_der_x509_certificate(row.der).public_bytes(serialization.Encoding.PEM).decode("ascii")
    return CertificateDetail(pem=pem, **row.as_dict(iso(utc_now())))


@router.post(
    "/certificates/{serial}/renew",
    status_code=201,
    summary="renew: same subject/SANs/profile",
    response_model=IssuedOut,
    **guarded(Permission.PKI_WRITE, 404, 409, 503),
)
def renew(request: Request, serial: Serial, body: RenewRequest) -> IssuedOut:
    set_audit(request, "pki.renew", f"serial:{serial[:80]}")
    with open_directory(request) as cadir:
        serial_number = parse_serial(serial)
        issued = authority(request, cadir).renew(
            serial_number,
            csr=body.csr.encode("utf-8") if body.csr is not None else None,
            same_key=body.csr is None,
            days=body.days,
            revoke_old=body.revoke_old,
        )
        set_audit(request, "pki.renew", f"serial:{serial[:80]}", f"new serial:{issued.serial}")
        return issued_out(cadir, issued.serial, issued.certificate)


@router.post(
    "/certificates/{serial}/revoke",
    summary="revoke and publish new CRLs",
    response_model=RevocationOut,
    **guarded(Permission.PKI_WRITE, 404, 409, 503),
)
def revoke(request: Request, serial: Serial, body: RevokeRequest) -> RevocationOut:
    set_audit(request, "pki.revoke", f"serial:{serial[:80]}", f"reason={body.reason}")
    with open_directory(request) as cadir:
        revocation = authority(request, cadir).revoke(serial, body.reason)
    return RevocationOut(serial=revocation.serial, reason=revocation.reason, crl_number=revocation.crl_number)


@router.post(
    "/crl",
    summary="sign fresh CRLs now",
    status_code=204,
    response_class=Response,
    **guarded(Permission.PKI_WRITE, 503),
)
def refresh_crl(request: Request) -> Response:
    set_audit(request, "pki.crl", "issuing-ca")
    with open_directory(request) as cadir:
        authority(request, cadir).refresh_crls()
    return Response(status_code=204)


_FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            PEM_TYPE: {"schema": {"type": "string"}},
            "application/pkix-crl": {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "the file",
    },
}


@router.get(
    "/crl",
    summary="the current CRL (PEM or DER)",
    response_class=Response,
    **guarded(Permission.READ, 503, responses=_FILE_RESPONSES),
)
def download_crl(
    request: Request,
    ca: Annotated[Literal["issuing", "root"], Query(description="whose CRL")] = "issuing",
    format: Annotated[Literal["pem", "der"], Query(description="encoding")] = "pem",
) -> Response:
    with open_directory(request) as cadir:
        issuing_crl, root_crl = cadir.current_crls()
    crl = issuing_crl if ca == "issuing" else root_crl
    if format == "der":
        return Response(crl.public_bytes(serialization.Encoding.DER), media_type="application/pkix-crl")
    return Response(crl.public_bytes(serialization.Encoding.PEM), media_type=PEM_TYPE)


@router.get(
    "/trust-bundle",
    summary="issuing CA + root CA, PEM (mosquitto cafile)",
    response_class=Response,
    **guarded(Permission.READ, 503, responses=_FILE_RESPONSES),
)
def trust_bundle(request: Request) -> Response:
    with open_directory(request) as cadir:
        return Response(cadir.chain_pem(), media_type=PEM_TYPE)


__all__ = ["PkiError", "router", "setup"]
