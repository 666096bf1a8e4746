"""Certificate request checks: what a device may ask the CA to sign.

A request reaches the CA either as a PKCS#10 CSR (RFC 2986) or, for devices that cannot make one, as a
subject and SANs typed by the operator. Both become a :class:`CertRequest` and go through the same
checks, in this order, and the first failure refuses the request with a stable ``code``:

1. size (``csr_too_large``) before any parsing, so a 1 GB upload costs nothing;
2. encoding: exactly one PEM ``CERTIFICATE REQUEST`` block and nothing else, or DER that re-encodes to
   the same bytes (``csr_not_pem_block``, ``csr_malformed``, ``csr_not_der``);
3. proof of possession: the CSR's self-signature verifies with the key it carries
   (``csr_signature_invalid``), made with SHA-256 or better (``csr_weak_signature_hash``);
4. key: RSA 2048..8192 with an odd exponent >= 65537, or EC on P-256 / P-384; DSA, P-192, RSA-1024,
   Ed25519 and friends are refused (``key_*``);
5. requested extensions: basicConstraints CA:TRUE (``csr_requests_ca``) and keyUsage keyCertSign /
   cRLSign (``csr_requests_cert_sign``) are refused outright, since no device needs them and asking is a
   sign of a hostile or broken client. Other requested extensions are ignored: the profile decides
   keyUsage, extendedKeyUsage and the rest; only subjectAltName is taken from the CSR;
6. subject: DER size <= 1 KiB, known attribute types only, no control characters (NUL included, the
   ``plc1\\x00.evil`` trick against C string comparisons), no wildcards, RFC 5280 upper bounds;
7. SANs: at most 100, DNS / IP / URI only, DNS names in LDH syntax without wildcards, IP addresses
   inside the configured plant networks, URIs with a scheme and no spaces or control characters.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID

from api.pki.errors import RequestRefused

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SanKind = Literal["dns", "ip", "uri"]
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Caps on what a certificate request may contain (HOSTILE_INPUTS A11)."""

    max_csr_bytes: int = 64 * 1024
    max_sans: int = 100
    max_subject_der_bytes: int = 1024
    max_uri_chars: int = 1024
    min_rsa_bits: int = 2048
    max_rsa_bits: int = 8192


@dataclass(frozen=True, slots=True)
class SanPolicy:
    """Where SAN values may point: the plant's own networks and, optionally, its DNS suffixes."""

    ip_networks: tuple[IPNetwork, ...] = ()
    dns_suffixes: tuple[str, ...] = ()  # empty = any syntactically valid name

    @staticmethod
    def default_networks() -> tuple[IPNetwork, ...]:
        """Private and loopback ranges: a device certificate naming a public IP is almost surely wrong."""
        return tuple(
            ipaddress.ip_network(n)
            for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128", "fc00::/7")
        )


@dataclass(frozen=True, slots=True)
class San:
    """One subjectAltName entry in a typed, comparable form."""

    kind: SanKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    def to_general_name(self) -> x509.GeneralName:
        if self.kind == "dns":
            return x509.DNSName(self.value)
        if self.kind == "ip":
            return x509.IPAddress(ipaddress.ip_address(self.value))
        return x509.UniformResourceIdentifier(self.value)


@dataclass(frozen=True, slots=True)
class CertRequest:
    """A checked request: subject, SANs and the public key the certificate will carry."""

    subject: x509.Name
    sans: tuple[San, ...]
    public_key: PublicKey
    source: str  # "csr" | "generated" | "renewal"
    ignored_extensions: tuple[str, ...] = field(default=())


_PEM_CSR = re.compile(
    rb"-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n?"
    rb"-----END (NEW )?CERTIFICATE REQUEST-----"
)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_WEAK_HASHES = ("md5", "sha1", "sha224")

# RFC 5280 Appendix A upper bounds (ub-*) for the attributes a device certificate may carry.
SUBJECT_ATTRIBUTE_LIMITS: dict[x509.ObjectIdentifier, tuple[str, int]] = {
    NameOID.COMMON_NAME: ("CN", 64),
    NameOID.ORGANIZATION_NAME: ("O", 64),
    NameOID.ORGANIZATIONAL_UNIT_NAME: ("OU", 64),
    NameOID.COUNTRY_NAME: ("C", 2),
    NameOID.STATE_OR_PROVINCE_NAME: ("ST", 128),
    NameOID.LOCALITY_NAME: ("L", 128),
    NameOID.DOMAIN_COMPONENT: ("DC", 63),
    NameOID.SERIAL_NUMBER: ("serialNumber", 64),
}


def _refuse(code: str, message: str) -> RequestRefused:
    return RequestRefused(code, message)


def _printable(text: str, limit: int = 60) -> str:
    """A value safe to echo in a one-line error: control characters escaped, long values cut."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit] + "..."


# --- encoding ---------------------------------------------------------------------------------------


def load_csr_bytes(data: bytes, limits: RequestLimits) -> x509.CertificateSigningRequest:
    """Parse one CSR from PEM or DER, refusing anything but exactly one canonical request."""
    if len(data) > limits.max_csr_bytes:
        raise _refuse("csr_too_large", f"CSR is {len(data)} bytes, the limit is {limits.max_csr_bytes}")
    stripped = data.strip()
    if not stripped:
        raise _refuse("csr_malformed", "CSR is empty")
    if stripped.startswith(b"-----"):
        match = _PEM_CSR.fullmatch(stripped)
        if match is None:
            raise _refuse(
                "csr_not_pem_block",
                "not exactly one PEM CERTIFICATE REQUEST block (extra blocks or trailing data?)",
            )
        try:
            der = base64.b64decode(re.sub(rb"\s+", b"", match.group(2)), validate=True)
        except binascii.Error as exc:
            raise _refuse("csr_malformed", f"bad base64 in the PEM block: {exc}") from None
    else:
        der = data
    try:
        csr = x509.load_der_x509_csr(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _refuse("csr_malformed", f"not a PKCS#10 request: {_printable(str(exc), 120)}") from None
    if csr.public_bytes(serialization.Encoding.DER) != der:
        raise _refuse("csr_not_der", "CSR is not in canonical DER (trailing bytes or BER encoding)")
    return csr


# --- keys -------------------------------------------------------------------------------------------


def check_public_key(key: object, limits: RequestLimits) -> PublicKey:
    """RSA 2048..8192 (odd exponent >= 65537) or EC P-256/P-384; anything else is refused."""
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.key_size
        if bits < limits.min_rsa_bits:
            raise _refuse("key_too_small", f"RSA key of {bits} bits, at least {limits.min_rsa_bits} needed")
        if bits > limits.max_rsa_bits:
            raise _refuse("key_too_large", f"RSA key of {bits} bits, at most {limits.max_rsa_bits} accepted")
        exponent = key.public_numbers().e
        if exponent < 65537 or exponent % 2 == 0:
            raise _refuse("key_weak_exponent", f"RSA public exponent {exponent} (need odd and >= 65537)")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise _refuse("key_curve_not_allowed", f"EC curve {key.curve.name} (only P-256 and P-384)")
        return key
    if isinstance(key, dsa.DSAPublicKey):
        raise _refuse("key_type_not_allowed", "DSA keys are not accepted (RSA or ECDSA P-256/P-384)")
    raise _refuse(
        "key_type_not_allowed", f"{type(key).__name__} keys are not accepted (RSA or ECDSA P-256/P-384)"
    )


def key_description(key: PublicKey) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384"}.get(key.curve.name, key.curve.name)


# --- subject ----------------------------------------------------------------------------------------


def check_subject(subject: x509.Name, limits: RequestLimits) -> None:
    """Size, attribute types, RFC 5280 bounds, no control characters, no wildcards."""
    size = len(subject.public_bytes())
    if size > limits.max_subject_der_bytes:
        raise _refuse(
            "subject_too_large", f"subject is {size} bytes, the limit is {limits.max_subject_der_bytes}"
        )
    for attr in subject:
        known = SUBJECT_ATTRIBUTE_LIMITS.get(attr.oid)
        if known is None:
            raise _refuse(
                "subject_attribute_not_allowed", f"subject attribute {attr.oid.dotted_string} not allowed"
            )
        short, bound = known
        value = attr.value
        if not isinstance(value, str):
            raise _refuse("subject_attribute_not_text", f"subject {short} is not a string")
        if _CONTROL.search(value):
            raise _refuse(
                "subject_control_character", f"subject {short}={_printable(value)} has a control character"
            )
        if not value.strip():
            raise _refuse("subject_empty_value", f"subject {short} is empty")
        if len(value) > bound:
            raise _refuse(
                "subject_value_too_long", f"subject {short} is {len(value)} characters, at most {bound}"
            )
        if "*" in value:
            raise _refuse("subject_wildcard", f"subject {short}={_printable(value)} has a wildcard")
        if short == "C" and not (len(value) == 2 and value.isascii() and value.isalpha()):
            raise _refuse("subject_bad_country", f"subject C={_printable(value)} is not a two-letter code")


# --- SANs -------------------------------------------------------------------------------------------


def check_dns_name(name: str, policy: SanPolicy) -> str:
    if _CONTROL.search(name):
        raise _refuse("san_control_character", f"DNS SAN {_printable(name)} has a control character")
    if "*" in name:
        raise _refuse("san_wildcard", f"wildcard DNS SAN {_printable(name)} refused")
    lowered = name.lower().rstrip(".")
    labels = lowered.split(".")
    if not lowered or len(lowered) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise _refuse("san_bad_dns_name", f"DNS SAN {_printable(name)} is not a valid host name")
    if policy.dns_suffixes and not any(
        lowered == s or lowered.endswith("." + s) for s in (x.lower().strip(".") for x in policy.dns_suffixes)
    ):
        raise _refuse("san_dns_out_of_zone", f"DNS SAN {lowered} is outside the allowed domains")
    return lowered


def check_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: SanPolicy) -> str:
    if not any(address.version == net.version and address in net for net in policy.ip_networks):
        raise _refuse(
            "san_ip_out_of_zone", f"IP SAN {address} is outside the plant networks allowed by this CA"
        )
    return str(address)


def check_uri(uri: str, limits: RequestLimits) -> str:
    if _CONTROL.search(uri):
        raise _refuse("san_control_character", f"URI SAN {_printable(uri)} has a control character")
    if len(uri) > limits.max_uri_chars:
        raise _refuse("san_uri_too_long", f"URI SAN is {len(uri)} characters, at most {limits.max_uri_chars}")
    if "*" in uri:
        raise _refuse("san_wildcard", f"wildcard URI SAN {_printable(uri)} refused")
    if not _URI_SCHEME.fullmatch(uri):
        raise _refuse("san_bad_uri", f"URI SAN {_printable(uri)} is not an absolute URI without spaces")
    return uri


def check_sans(
    names: Sequence[x509.GeneralName], policy: SanPolicy, limits: RequestLimits
) -> tuple[San, ...]:
    """Turn GeneralNames into checked :class:`San` values (duplicates dropped, order kept)."""
    if len(names) > limits.max_sans:
        raise _refuse("too_many_sans", f"{len(names)} subjectAltNames, at most {limits.max_sans}")
    out: dict[San, None] = {}
    for name in names:
        if isinstance(name, x509.DNSName):
            san = San("dns", check_dns_name(name.value, policy))
        elif isinstance(name, x509.IPAddress):
            value = name.value
            if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise _refuse("san_bad_ip", f"IP SAN {value} is a network, not an address")
            san = San("ip", check_ip(value, policy))
        elif isinstance(name, x509.UniformResourceIdentifier):
            san = San("uri", check_uri(name.value, limits))
        else:
            raise _refuse("san_type_not_allowed", f"subjectAltName of type {type(name).__name__} not allowed")
        out[san] = None
    return tuple(out)


def parse_san_option(text: str) -> x509.GeneralName:
    """``dns:NAME``, ``ip:ADDRESS`` or ``uri:URI`` as typed on the command line."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep or not value:
        raise _refuse(
            "san_option_invalid", f"--san {_printable(text)}: expected dns:NAME, ip:ADDRESS or uri:URI"
        )
    if kind == "dns":
        return x509.DNSName(value)
    if kind == "ip":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            raise _refuse("san_bad_ip", f"--san ip:{_printable(value)} is not an IP address") from None
    if kind == "uri":
        return x509.UniformResourceIdentifier(value)
    raise _refuse("san_option_invalid", f"--san {_printable(text)}: type must be dns, ip or uri")


def parse_subject_option(text: str) -> x509.Name:
    """An RFC 4514 string such as ``CN=plc1,O=Plant A``."""
    if len(text) > 4096:
        raise _refuse("subject_too_large", "subject string longer than 4096 characters")
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise _refuse(
            "subject_option_invalid", f"--subject is not an RFC 4514 name: {_printable(str(exc))}"
        ) from None


# --- whole requests ---------------------------------------------------------------------------------


def _requested_extensions(csr: x509.CertificateSigningRequest) -> x509.Extensions:
    try:
        return csr.extensions
    except (ValueError, x509.DuplicateExtension, UnsupportedAlgorithm) as exc:
        raise _refuse(
            "csr_extensions_malformed", f"CSR extensions cannot be read: {_printable(str(exc))}"
        ) from None


def request_from_csr(data: bytes, policy: SanPolicy, limits: RequestLimits | None = None) -> CertRequest:
    """Every check above on one CSR; returns the request the profile will then judge."""
    limits = limits or RequestLimits()
    csr = load_csr_bytes(data, limits)
    try:
        hash_alg = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        hash_alg = None
    if hash_alg is None or hash_alg.name in _WEAK_HASHES:
        name = hash_alg.name if hash_alg is not None else "unknown"
        raise _refuse("csr_weak_signature_hash", f"CSR signed with {name} (SHA-256 or better needed)")
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _refuse(
            "csr_signature_invalid", f"CSR signature cannot be checked: {_printable(str(exc))}"
        ) from None
    if not signature_ok:
        raise _refuse("csr_signature_invalid", "CSR signature does not verify (no proof of possession)")
    try:
        raw_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _refuse(
            "key_type_not_allowed", f"CSR public key not supported: {_printable(str(exc))}"
        ) from None
    key = check_public_key(raw_key, limits)
    extensions = _requested_extensions(csr)
    sans: tuple[San, ...] = ()
    ignored: list[str] = []
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.BasicConstraints):
            if value.ca:
                raise _refuse("csr_requests_ca", "CSR asks for basicConstraints CA:TRUE")
        elif isinstance(value, x509.KeyUsage):
            if value.key_cert_sign or value.crl_sign:
                raise _refuse("csr_requests_cert_sign", "CSR asks for keyUsage keyCertSign/cRLSign")
        elif isinstance(value, x509.SubjectAlternativeName):
            sans = check_sans(list(value), policy, limits)
        else:
            ignored.append(ext.oid.dotted_string)
    check_subject(csr.subject, limits)
    return CertRequest(csr.subject, sans, key, "csr", tuple(ignored))


def request_from_fields(
    subject: x509.Name,
    san_names: Iterable[x509.GeneralName],
    public_key: object,
    policy: SanPolicy,
    source: str,
    limits: RequestLimits | None = None,
) -> CertRequest:
    """The same checks for a request typed by the operator (generated key) or taken from a renewal."""
    limits = limits or RequestLimits()
    key = check_public_key(public_key, limits)
    check_subject(subject, limits)
    sans = check_sans(list(san_names), policy, limits)
    return CertRequest(subject, sans, key, source)


def signature_hash_for(key: object) -> hashes.SHA256 | hashes.SHA384:
    """SHA-384 for P-384 keys (matching strength), SHA-256 otherwise."""
    if (
        isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
        and key.curve.name == "secp384r1"
    ):
        return hashes.SHA384()
    return hashes.SHA256()
