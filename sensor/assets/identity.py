"""What devices say about themselves on the wire, turned into bounded identity fields.

Sources, each read from a dissector event (no I/O here):

* Modbus FC 43 / MEI 14 Read Device Identification objects (MODBUS Application Protocol v1.1b3
  §6.21): VendorName, ProductCode, MajorMinorRevision, VendorUrl, ProductName, ModelName,
  UserApplicationName, kept as ``modbus.vendor_name``, ``modbus.product_code``...
* OPC UA ApplicationDescription (OPC 10000-4 §7.2): ApplicationUri, ProductUri, ApplicationName,
  ApplicationType, from CreateSession (client and server) and GetEndpoints (server).
* Certificates (OPC UA OpenSecureChannel / CreateSession, TLS): subject, SAN URI / DNS / IP, thumbprint.
* MQTT CONNECT client identifiers (MQTT 3.1.1 §3.1.3.1, 5.0 §3.1.3.1), TLS SNI (RFC 6066 §3).
* Identity fields that tshark decoded for the protocols zonewarden does not dissect (``sensor/deep.py``).

Every value is device-controlled text: it is truncated to ``Limits.max_field_chars`` and its control
characters are escaped before it is kept (hostile input G2), so a 64 KiB ApplicationName costs the
store 256 characters and cannot forge a line in a terminal.
"""

from __future__ import annotations

import re
from typing import Any, Final

from sensor.records import CertificateInfo

TRUNCATION_MARK: Final = "…"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_text(value: object, max_chars: int) -> str:
    """``value`` as text of at most ``max_chars`` characters, control characters escaped as ``\\xNN``."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > max_chars * 4:
        text = text[: max_chars * 4]  # bound the work before escaping
    if not text.isprintable():
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > max_chars:
        text = text[: max(0, max_chars - 1)] + TRUNCATION_MARK
    return text


def snake_name(name: str) -> str:
    """``VendorName`` -> ``vendor_name`` (FC 43 object names as identity keys)."""
    out: list[str] = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def modbus_device_identity(objects: tuple[tuple[int, str], ...]) -> dict[str, str]:
    """FC 43/14 objects as identity keys (object ids 0..6 by name, others ``object_0xNN``)."""
    from sensor.dissectors.modbus.codes import device_id_object_name

    return {f"modbus.{snake_name(device_id_object_name(oid))}": value for oid, value in objects}


APPLICATION_FIELDS: Final = (
    ("application_uri", "application_uri"),
    ("product_uri", "product_uri"),
    ("application_name", "application_name"),
    ("application_type", "application_type"),
)


def opcua_application_identity(description: Any) -> dict[str, str]:
    """An OPC UA ApplicationDescription (as decoded by the dissector) as ``opcua.*`` identity keys."""
    if not isinstance(description, dict):
        return {}
    out: dict[str, str] = {}
    for source, key in APPLICATION_FIELDS:
        value = description.get(source)
        if isinstance(value, str) and value:
            out[f"opcua.{key}"] = value
        elif isinstance(value, dict) and isinstance(value.get("text"), str) and value["text"]:
            out[f"opcua.{key}"] = value["text"]  # LocalizedText rendered as a dict
    return out


def certificate_summary(cert: CertificateInfo, source: str) -> dict[str, Any]:
    """The parts of a certificate that identify its holder (kept per asset, keyed by thumbprint)."""
    return {
        "source": source,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "san_uris": list(cert.san_uris[:8]),
        "san_dns": list(cert.san_dns[:8]),
        "san_ips": list(cert.san_ips[:8]),
        "not_after": cert.not_after,
        "self_signed": cert.self_signed,
        "sha256": cert.sha256,
    }


def endpoint_host(url: str) -> str:
    """Host part of an ``opc.tcp://host:port/path`` URL (brackets of an IPv6 literal removed)."""
    rest = url.partition("://")[2] or url
    host = rest.split("/", 1)[0]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
