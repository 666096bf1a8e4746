"""X.509 certificates seen on the wire, parsed once with ``cryptography`` (RFC 5280).

Shared by the OPC UA dissector (OpenSecureChannel SenderCertificate, CreateSession, endpoints)
and the TLS dissector (Certificate handshake message), so the PKI can match both the same way.
``cryptography`` is imported by the first certificate parsed, not with the dissectors: it costs ~40 ms of
start-up that a capture without certificates never needs.
"""

from __future__ import annotations

import hashlib
from datetime import UTC
from typing import TYPE_CHECKING

from sensor.errors import Malformed
from sensor.records import CertificateInfo

if TYPE_CHECKING:
    from cryptography import x509

MAX_CERT_BYTES = 64 * 1024


def split_der_chain(blob: bytes, max_certs: int = 16) -> list[bytes]:
    """Split concatenated DER certificates (OPC 10000-6 §6.7.2: SenderCertificate may hold a chain).

    Walks the outer SEQUENCE headers only; a malformed header ends the walk. Bounded by
    ``max_certs`` so a hostile blob cannot make us parse thousands of certificates.
    """
    out: list[bytes] = []
    pos = 0
    while pos < len(blob) and len(out) < max_certs:
        if blob[pos] != 0x30 or pos + 2 > len(blob):
            break
        first = blob[pos + 1]
        if first < 0x80:
            hdr, length = 2, first
        else:
            n = first & 0x7F
            if n == 0 or n > 4 or pos + 2 + n > len(blob):
                break
            hdr = 2 + n
            length = int.from_bytes(blob[pos + 2 : pos + 2 + n], "big")
        end = pos + hdr + length
        if end > len(blob):
            break
        out.append(blob[pos:end])
        pos = end
    return out


def _key_info(cert: x509.Certificate) -> tuple[str, int]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        key = cert.public_key()
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return "unknown", 0


def _verifies_with_own_key(cert: x509.Certificate) -> bool:
    """True when the certificate's signature checks out against its own public key."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

    try:
        key = cert.public_key()
        algo = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and algo is not None:
            params = cert.signature_algorithm_parameters
            pad = params if isinstance(params, padding.PSS) else padding.PKCS1v15()
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, algo)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except Exception:  # any failure to verify means "not provably self-signed"
        return False
    return True


def parse_certificate(der: bytes) -> CertificateInfo:
    """Parse one DER certificate; raise :class:`Malformed` ("bad_certificate") if it is not one."""
    if not der or len(der) > MAX_CERT_BYTES:
        raise Malformed("bad_certificate", f"{len(der)} bytes")
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string()
        issuer = cert.issuer.rfc4514_string()
        not_before = cert.not_valid_before_utc.astimezone(UTC).isoformat()
        not_after = cert.not_valid_after_utc.astimezone(UTC).isoformat()
        serial = format(cert.serial_number, "x")
        sig_name = (
            getattr(cert.signature_algorithm_oid, "_name", None) or cert.signature_algorithm_oid.dotted_string
        )
    except (ValueError, TypeError) as exc:
        raise Malformed("bad_certificate", str(exc)[:200]) from exc

    uris: list[str] = []
    dns: list[str] = []
    ips: list[str] = []
    is_ca = False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]
        dns = [str(d) for d in san.get_values_for_type(x509.DNSName)]
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except (x509.ExtensionNotFound, ValueError, TypeError):
        pass
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError, TypeError):
        pass
    key_type, key_size = _key_info(cert)
    return CertificateInfo(
        subject=subject,
        issuer=issuer,
        serial_hex=serial,
        not_before=not_before,
        not_after=not_after,
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=str(sig_name),
        san_uris=tuple(uris),
        san_dns=tuple(dns),
        san_ips=tuple(ips),
        sha1=hashlib.sha1(der).hexdigest(),
        sha256=hashlib.sha256(der).hexdigest(),
        self_signed=subject == issuer and _verifies_with_own_key(cert),
        is_ca=is_ca,
    )
