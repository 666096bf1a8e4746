"""Built-in certificate profiles for OT devices.

A profile decides everything a requester must not: keyUsage, extendedKeyUsage, which SAN types are
required, the validity, and profile-specific extensions. The request only brings a subject, SANs and a
key.

+-----------------+-----------------------------+---------------------------+---------------------------+
| profile         | SAN rules                   | keyUsage (RSA / EC)       | extendedKeyUsage          |
+=================+=============================+===========================+===========================+
| opcua-app       | exactly one URI (the        | dS nR kE dE / dS nR kA    | serverAuth, clientAuth    |
|                 | ApplicationUri), DNS/IP ok  |                           |                           |
| mqtt-broker     | >= 1 DNS or IP              | dS kE / dS kA             | serverAuth                |
| mqtt-client     | CN = client id; URI/DNS ok  | dS / dS                   | clientAuth                |
| modbus-security | DNS/IP ok; role required    | dS kE / dS kA             | serverAuth, clientAuth    |
| tls-server      | >= 1 DNS or IP              | dS kE / dS kA             | serverAuth                |
| tls-client      | CN required; DNS/IP/URI ok  | dS / dS                   | clientAuth                |
+-----------------+-----------------------------+---------------------------+---------------------------+

(dS digitalSignature, nR nonRepudiation/contentCommitment, kE keyEncipherment, dE dataEncipherment,
kA keyAgreement.)

Sources: OPC 10000-6 §6.2.2 (Application Instance Certificate: subjectAltName URI = ApplicationUri,
keyUsage for RSA policies digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment;
extendedKeyUsage serverAuth and clientAuth); MQTT 3.1.1 §3.1.3.1 (ClientId, 1..23 bytes of
[0-9a-zA-Z] must be accepted by every server, more is server-specific); Modbus/TCP Security
(MB-TCP-Security v36, R-21/R-22): the client's role travels in an X.509v3 extension with the Modbus.org
private enterprise OID 1.3.6.1.4.1.50316.802.1 whose value is an ASN.1 UTF8String. The role extension is
marked non-critical: a critical unknown extension would make every generic TLS stack (OpenSSL,
mosquitto, browsers) reject the certificate, and Modbus servers that enforce roles read it anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api.pki.csr import PublicKey, San, SanKind
from api.pki.errors import RequestRefused

MODBUS_ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
MAX_ROLE_CHARS = 128
DEFAULT_VALIDITY_DAYS = 365
BACKDATE_SECONDS = 300  # notBefore five minutes early: device clocks in plants drift

_KU_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
)
_MQTT_CLIENT_ID = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_ROLE = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,128}")


@dataclass(frozen=True, slots=True)
class Profile:
    """What a certificate of one kind looks like."""

    name: str
    description: str
    eku: tuple[x509.ObjectIdentifier, ...]
    ku_rsa: frozenset[str]
    ku_ec: frozenset[str]
    san_kinds: frozenset[SanKind]
    exactly_one_uri: bool = False  # the OPC UA ApplicationUri
    needs_host_san: bool = False  # at least one DNS name or IP address
    needs_cn: bool = False
    needs_role: bool = False
    default_days: int = DEFAULT_VALIDITY_DAYS
    max_days: int = 825

    def key_usage(self, key: PublicKey) -> x509.KeyUsage:
        wanted = self.ku_rsa if isinstance(key, rsa.RSAPublicKey) else self.ku_ec
        flags = {name: name in wanted for name in _KU_NAMES}
        return x509.KeyUsage(
            digital_signature=flags["digital_signature"],
            content_commitment=flags["content_commitment"],
            key_encipherment=flags["key_encipherment"],
            data_encipherment=flags["data_encipherment"],
            key_agreement=flags["key_agreement"],
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )

    def check(self, subject: x509.Name, sans: Sequence[San], role: str | None) -> None:
        """Refuse a subject, SANs and role that do not fit this profile (``profile_*`` codes)."""
        for san in sans:
            if san.kind not in self.san_kinds:
                raise RequestRefused(
                    "profile_san_type_not_allowed",
                    f"profile {self.name} does not allow {san.kind} SANs ({san})",
                )
        uris = [s.value for s in sans if s.kind == "uri"]
        if self.exactly_one_uri and len(uris) != 1:
            raise RequestRefused(
                "profile_needs_application_uri",
                f"profile {self.name} needs exactly one URI SAN (the ApplicationUri), got {len(uris)}",
            )
        if self.needs_host_san and not any(s.kind in ("dns", "ip") for s in sans):
            raise RequestRefused("profile_needs_host_san", f"profile {self.name} needs a DNS or IP SAN")
        common_names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if self.needs_cn:
            if len(common_names) != 1:
                raise RequestRefused("profile_needs_cn", f"profile {self.name} needs exactly one subject CN")
            if self.name == "mqtt-client" and not _MQTT_CLIENT_ID.fullmatch(str(common_names[0].value)):
                raise RequestRefused("profile_bad_client_id", "subject CN is not a usable MQTT client id")
        if not subject and not sans:
            raise RequestRefused("profile_empty_identity", "request has neither a subject nor a SAN")
        if self.needs_role:
            if role is None or not _ROLE.fullmatch(role):
                raise RequestRefused(
                    "profile_needs_role",
                    f"profile {self.name} needs --role "
                    f"(1..{MAX_ROLE_CHARS} characters, no control characters)",
                )
        elif role is not None:
            raise RequestRefused("profile_role_not_allowed", f"profile {self.name} does not carry a role")

    def extra_extensions(self, role: str | None) -> list[x509.ExtensionType]:
        if self.needs_role and role is not None:
            return [modbus_role_extension(role)]
        return []


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def modbus_role_extension(role: str) -> x509.UnrecognizedExtension:
    """The Modbus/TCP Security role: OID 1.3.6.1.4.1.50316.802.1, value DER UTF8String (tag 0x0C)."""
    encoded = role.encode("utf-8")
    return x509.UnrecognizedExtension(MODBUS_ROLE_OID, b"\x0c" + _der_length(len(encoded)) + encoded)


def read_modbus_role(cert: x509.Certificate) -> str | None:
    """The role carried by a certificate, or None (also None when the value is not a UTF8String)."""
    try:
        ext = cert.extensions.get_extension_for_oid(MODBUS_ROLE_OID)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        return None
    raw = value.value
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    if raw[1] < 0x80:
        start, length = 2, raw[1]
    else:
        count = raw[1] & 0x7F
        start, length = 2 + count, int.from_bytes(raw[2 : 2 + count], "big")
    if start + length != len(raw):
        return None
    try:
        return raw[start:].decode("utf-8")
    except UnicodeDecodeError:
        return None


_TLS_SERVER_KU_RSA = frozenset({"digital_signature", "key_encipherment"})
_TLS_SERVER_KU_EC = frozenset({"digital_signature", "key_agreement"})
_SIGN_ONLY = frozenset({"digital_signature"})

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="opcua-app",
            description="OPC UA application instance certificate (OPC 10000-6 §6.2.2)",
            eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            ku_rsa=frozenset(
                {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment"}
            ),
            ku_ec=frozenset({"digital_signature", "content_commitment", "key_agreement"}),
            san_kinds=frozenset({"uri", "dns", "ip"}),
            exactly_one_uri=True,
        ),
        Profile(
            name="mqtt-broker",
            description="MQTT broker (TLS server)",
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
            ku_rsa=_TLS_SERVER_KU_RSA,
            ku_ec=_TLS_SERVER_KU_EC,
            san_kinds=frozenset({"dns", "ip"}),
            needs_host_san=True,
        ),
        Profile(
            name="mqtt-client",
            description="MQTT client, client id in the subject CN",
            eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            ku_rsa=_SIGN_ONLY,
            ku_ec=_SIGN_ONLY,
            san_kinds=frozenset({"uri", "dns"}),
            needs_cn=True,
        ),
        Profile(
            name="modbus-security",
            description="Modbus/TCP Security device with its role extension",
            eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            ku_rsa=_TLS_SERVER_KU_RSA,
            ku_ec=_TLS_SERVER_KU_EC,
            san_kinds=frozenset({"dns", "ip"}),
            needs_cn=True,
            needs_role=True,
        ),
        Profile(
            name="tls-server",
            description="generic TLS server",
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
            ku_rsa=_TLS_SERVER_KU_RSA,
            ku_ec=_TLS_SERVER_KU_EC,
            san_kinds=frozenset({"dns", "ip"}),
            needs_host_san=True,
        ),
        Profile(
            name="tls-client",
            description="generic TLS client",
            eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            ku_rsa=_SIGN_ONLY,
            ku_ec=_SIGN_ONLY,
            san_kinds=frozenset({"uri", "dns", "ip"}),
            needs_cn=True,
        ),
    )
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise RequestRefused(
            "profile_unknown", f"unknown profile {name!r} (one of: {', '.join(PROFILES)})"
        ) from None
