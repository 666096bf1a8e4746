"""EST, RFC 7030: ``/.well-known/est/cacerts``, ``simpleenroll``, ``simplereenroll`` (with an optional
``/<label>/`` segment naming the certificate profile, §3.2.2).

Bodies follow the RFC, not JSON: a request is a PKCS#10 CSR, DER, base64-encoded, with Content-Type
``application/pkcs10`` (§4.2.1); an answer is a "certs-only" CMS SignedData (PKCS#7, no signers),
DER, base64-encoded, with Content-Type ``application/pkcs7-mime`` (§4.1.3, §4.2.3) and
``Content-Transfer-Encoding: base64``. Clients authenticate with the same bearer tokens as the rest of
the API (the RFC allows HTTP-layer authentication, §3.2.3); enrolment needs ``pki:write``.

simplereenroll (§4.2.2) renews the newest valid certificate with the CSR's subject, on the CSR's key.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

import anyio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam

from api.auth import Permission
from api.deps import set_audit
from api.errors import ApiError, not_found
from api.pki.csr import load_csr_bytes
from api.pki.profiles import PROFILES
from api.routes.common import COMMON_ERRORS, guarded
from api.routes.pki import authority, open_directory
from api.settings import Settings

router = APIRouter(prefix="/.well-known/est", tags=["est"], responses=COMMON_ERRORS)

PKCS7_TYPE = "application/pkcs7-mime"
CERTS_ONLY = {PKCS7_TYPE: {"schema": {"type": "string", "description": "base64 DER certs-only CMS"}}}
CSR_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/pkcs10": {
                "schema": {"type": "string", "minLength": 1, "description": "base64 DER PKCS#10"}
            }
        },
    }
}
Label = Annotated[
    str,
    PathParam(
        pattern=f"^({'|'.join(map(re.escape, PROFILES))})$",
        description="certificate profile",
        examples=["opcua-app"],
    ),
]
_WHITESPACE = re.compile(rb"\s+")


def _certs_only(certs: list[x509.Certificate]) -> Response:
    der = pkcs7.serialize_certificates(certs, serialization.Encoding.DER)
    return Response(
        base64.encodebytes(der),
        media_type=f"{PKCS7_TYPE}; smime-type=certs-only",
        headers={"Content-Transfer-Encoding": "base64"},
    )


async def _csr_der(request: Request) -> bytes:
    body = await request.body()
    try:
        der = base64.b64decode(_WHITESPACE.sub(b"", body), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, "csr_not_base64", "the body must be a base64-encoded DER PKCS#10 request"
        ) from None
    if not der:
        raise ApiError(400, "csr_malformed", "the body is empty")
    return der


def _cacerts(request: Request) -> Response:
    with open_directory(request) as cadir:
        return _certs_only(cadir.chain())


def _enroll(request: Request, der: bytes, profile: str) -> Response:
    set_audit(request, "est.simpleenroll", f"profile={profile}")
    with open_directory(request) as cadir:
        issued = authority(request, cadir).issue_csr(der, profile)
        set_audit(request, "est.simpleenroll", f"serial:{issued.serial}", f"profile={profile}")
        return _certs_only([issued.certificate])


def _reenroll(request: Request, der: bytes) -> Response:
    set_audit(request, "est.simplereenroll", "csr")
    with open_directory(request) as cadir:
        ca = authority(request, cadir)
        subject = load_csr_bytes(der, ca.limits).subject.rfc4514_string()
        current = [
            r
            for r in cadir.store.all()
            if r.issuer == cadir.issuer and r.subject == subject and r.status == "valid"
        ]
        if not current:
            raise not_found("certificate with this subject")
        old = max(current, key=lambda r: r.id)
        issued = ca.renew(int(old.serial, 16), csr=der)
        set_audit(request, "est.simplereenroll", f"serial:{old.serial}", f"new serial:{issued.serial}")
        return _certs_only([issued.certificate])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


_GET = {
    "response_class": Response,
    **guarded(Permission.READ, 503, responses={200: {"content": CERTS_ONLY, "description": "CA chain"}}),
}
_POST = {
    "response_class": Response,
    **guarded(
        Permission.PKI_WRITE,
        404,
        409,
        503,
        responses={200: {"content": CERTS_ONLY, "description": "the new certificate"}},
    ),
    "openapi_extra": {"x-permission": str(Permission.PKI_WRITE), **CSR_BODY},
}


@router.get("/cacerts", summary="EST: the CA certificates (RFC 7030 §4.1)", **_GET)
def cacerts(request: Request) -> Response:
    return _cacerts(request)


@router.get("/{label}/cacerts", summary="EST: the CA certificates, labelled", **_GET)
def cacerts_labelled(request: Request, label: Label) -> Response:
    return _cacerts(request)


@router.post("/simpleenroll", summary="EST: enrol from a PKCS#10 request (RFC 7030 §4.2.1)", **_POST)
async def simpleenroll(request: Request) -> Response:
    der = await _csr_der(request)
    return await anyio.to_thread.run_sync(_enroll, request, der, _settings(request).est_default_profile)


@router.post("/{label}/simpleenroll", summary="EST: enrol with the profile named by the label", **_POST)
async def simpleenroll_labelled(request: Request, label: Label) -> Response:
    der = await _csr_der(request)
    return await anyio.to_thread.run_sync(_enroll, request, der, label)


@router.post(
    "/simplereenroll", summary="EST: re-enrol (renew) from a PKCS#10 request (RFC 7030 §4.2.2)", **_POST
)
async def simplereenroll(request: Request) -> Response:
    return await anyio.to_thread.run_sync(_reenroll, request, await _csr_der(request))


@router.post("/{label}/simplereenroll", summary="EST: re-enrol, labelled", **_POST)
async def simplereenroll_labelled(request: Request, label: Label) -> Response:
    return await anyio.to_thread.run_sync(_reenroll, request, await _csr_der(request))
