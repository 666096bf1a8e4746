"""Revocation: serial parsing, RFC 5280 reason codes and CRL building.

A CRL here is a complete (not delta) v2 CRL (RFC 5280 §5) with:

* ``cRLNumber`` (§5.2.3), incremented for every CRL the issuer signs, kept in the store;
* ``authorityKeyIdentifier`` (§5.2.1) so validators pick the right CA key;
* ``nextUpdate`` at most 7 days after ``thisUpdate`` (OT devices that cache CRLs must fetch a fresh one
  at least weekly; a shorter value is configurable);
* one entry per revoked certificate with its revocation date and, unless the reason is
  ``unspecified``, a ``reasonCode`` entry extension (§5.3.1 says to omit it then).
"""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.pki.csr import signature_hash_for
from api.pki.errors import Unprocessable
from api.pki.names import REASON_NAMES as REASON_NAMES

MAX_CRL_DAYS = 7
MAX_SERIAL_OCTETS = 20  # RFC 5280 §4.1.2.2

# RFC 5280 §5.3.1 CRLReason names, as accepted on the command line. removeFromCRL only exists in delta
# CRLs and certificateHold is a reversible suspension this CA does not offer (a revocation is final).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keycompromise": x509.ReasonFlags.key_compromise,
    "cacompromise": x509.ReasonFlags.ca_compromise,
    "affiliationchanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationofoperation": x509.ReasonFlags.cessation_of_operation,
    "privilegewithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aacompromise": x509.ReasonFlags.aa_compromise,
}
_HEX = re.compile(r"[0-9a-fA-F]+")


def parse_reason(text: str) -> x509.ReasonFlags:
    """``keyCompromise``, ``key-compromise`` and ``key_compromise`` all work."""
    key = text.replace("-", "").replace("_", "").lower()
    if key in ("certificatehold", "removefromcrl"):
        raise Unprocessable(
            "reason_not_supported", f"reason {text} is not supported: revocation here is final"
        )
    try:
        return REASONS[key]
    except KeyError:
        raise Unprocessable(
            "reason_unknown", f"unknown revocation reason {text!r} (one of: {', '.join(REASON_NAMES)})"
        ) from None


def parse_serial(text: str) -> int:
    """A serial as hex (``0a1b...``, ``0x0a1b``, ``0a:1b:...``); RFC 5280 §4.1.2.2 bounds enforced.

    A leading ``-`` is a negative serial (distinct error: no conforming CA issues one); more than 20
    octets in the DER INTEGER (a value of 2**159 or more needs a 21st octet) is another.
    """
    cleaned = text.strip().replace(":", "").replace(" ", "")
    negative = cleaned.startswith("-")
    if negative:
        cleaned = cleaned[1:]
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    if not cleaned or not _HEX.fullmatch(cleaned) or len(cleaned) > 1024:
        raise Unprocessable("serial_invalid", f"serial {text[:80]!r} is not a hexadecimal number")
    value = int(cleaned, 16)
    if negative and value != 0:
        raise Unprocessable(
            "serial_negative", f"serial {text[:80]} is negative (RFC 5280 serials are positive)"
        )
    if value == 0:
        raise Unprocessable("serial_not_positive", "serial 0 is not a valid certificate serial number")
    # DER INTEGER content octets: a positive value whose top bit is set needs a leading 0x00.
    octets = value.bit_length() // 8 + 1
    if octets > MAX_SERIAL_OCTETS:
        raise Unprocessable(
            "serial_too_long",
            f"serial needs {octets} octets, RFC 5280 allows at most {MAX_SERIAL_OCTETS}",
        )
    return value


def reason_name(reason: x509.ReasonFlags) -> str:
    for name in REASON_NAMES:
        if REASONS[name.lower()] == reason:
            return name
    return reason.value


def reason_from_name(name: str) -> x509.ReasonFlags:
    return REASONS[name.lower()]


def build_crl(
    issuer_cert: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    entries: list[tuple[int, dt.datetime, x509.ReasonFlags]],
    crl_number: int,
    now: dt.datetime,
    days: int = MAX_CRL_DAYS,
) -> x509.CertificateRevocationList:
    """Sign a complete CRL for ``issuer_cert`` listing ``entries`` (serial, revoked at, reason)."""
    days = max(1, min(days, MAX_CRL_DAYS))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    for serial, revoked_at, reason in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        if reason != x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer_key, signature_hash_for(issuer_key))
