"""MQTT data representation (5.0 §1.5, 3.1.1 §1.5) and version 5 properties (5.0 §2.2.2).

Everything here reads through a :class:`~sensor.dissectors.base.Reader` and raises only
:class:`~sensor.errors.Truncated` / :class:`~sensor.errors.Malformed`. Findings that do not stop the
parse (a string that is not valid UTF-8, a topic with too many levels) are appended to
``ParseContext.issues`` as ``(anomaly kind, detail)`` pairs for the session to report.
"""

from __future__ import annotations

from typing import Any

from sensor.dissectors.base import Reader
from sensor.dissectors.mqtt import codes
from sensor.errors import Malformed

# How many repeated properties (user properties, subscription identifiers) one packet keeps; the
# rest are counted, so a packet of 1 MiB of empty user properties cannot become 260 k objects.
MAX_REPEATED_PROPERTIES = 32
# Bytes of binary property values (correlation data) copied into events, as hex.
BINARY_PREVIEW = 32


class ParseContext:
    """Per-session parse settings plus the non-fatal findings of the packet being parsed."""

    __slots__ = (
        "issues",
        "log_passwords",
        "max_field_chars",
        "max_filters",
        "max_topic_levels",
        "payload_preview",
        "version",
    )

    def __init__(
        self,
        version: int = 4,
        payload_preview: int = 64,
        max_topic_levels: int = 200,
        max_filters: int = 1000,
        max_field_chars: int = 256,
        log_passwords: bool = False,
    ) -> None:
        self.version = version
        self.payload_preview = payload_preview
        self.max_topic_levels = max_topic_levels
        self.max_filters = max_filters
        self.max_field_chars = max_field_chars
        self.log_passwords = log_passwords
        self.issues: list[tuple[str, str]] = []


def read_varint(r: Reader) -> int:
    """Variable Byte Integer (5.0 §1.5.5): 7 bits per byte, low group first, at most 4 bytes."""
    value = 0
    for shift in (0, 7, 14, 21):
        b = r.u8()
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
    raise Malformed("varint_too_long", "variable byte integer longer than 4 bytes")


def escape_bytes(raw: bytes) -> str:
    """JSON-safe text of bytes that are not clean UTF-8: bad bytes and NUL as ``\\xNN``."""
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def decode_text(raw: bytes, ctx: ParseContext, what: str) -> str:
    """UTF-8 Encoded String content (5.0 §1.5.4, 3.1.1 §1.5.3): no U+0000, no surrogates.

    Python's strict UTF-8 codec already refuses encoded surrogates and overlong forms; a string
    that fails is kept escaped and flagged (hostile input Q9), never dropped.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        ctx.issues.append(("mqtt.invalid_utf8", f"{what}: {escape_bytes(raw[:64])}"))
        text = escape_bytes(raw)
    else:
        if "\x00" in text:
            ctx.issues.append(("mqtt.invalid_utf8", f"{what}: contains U+0000"))
            text = text.replace("\x00", "\\x00")
    if len(text) > ctx.max_field_chars:
        text = text[: ctx.max_field_chars]
    return text


def read_string(r: Reader, ctx: ParseContext, what: str) -> str:
    n = r.u16be()
    return decode_text(r.bytes(n), ctx, what)


def read_binary(r: Reader) -> bytes:
    """Binary Data (5.0 §1.5.6): u16 length + bytes."""
    return r.bytes(r.u16be())


def check_topic_levels(raw: bytes, ctx: ParseContext, what: str) -> None:
    """Count topic levels without splitting (hostile input Q8: 65 k '/' must not make 65 k objects)."""
    levels = raw.count(b"/") + 1
    if levels > ctx.max_topic_levels:
        ctx.issues.append(("mqtt.topic_levels_exceeded", f"{what} has {levels} levels"))


def parse_properties(r: Reader, packet_type: int, ctx: ParseContext) -> dict[str, Any]:
    """Properties block (5.0 §2.2.2): Variable Byte Integer length, then id/value pairs.

    ```
    +-----------------+--------+-------+--------+-------+ ...
    | Property Length | id (VBI)| value | id     | value |
    +-----------------+--------+-------+--------+-------+ ...
    ```
    An id unknown to 5.0, an id not allowed in this packet type, or a repeat of a non-repeatable
    property is a Malformed Packet / Protocol Error (§2.2.2.2); a property length that runs past the
    packet raises Truncated, which the caller reports as malformed (hostile inputs Q5, Q6).
    """
    length = read_varint(r)
    pr = r.sub(length)
    out: dict[str, Any] = {}
    if not length:
        return out
    seen: set[int] = set()
    while pr.remaining:
        pid = read_varint(pr)
        spec = codes.PROPERTIES.get(pid)
        if spec is None:
            raise Malformed("unknown_property", f"property id 0x{pid:02x}")
        name, kind, allowed = spec
        if packet_type not in allowed:
            where = "will" if packet_type == codes.WILL else codes.PACKET_TYPE_NAMES[packet_type]
            raise Malformed("property_not_allowed", f"{name} in {where}")
        if pid in seen and pid not in codes.REPEATABLE_PROPERTIES:
            raise Malformed("duplicate_property", name)
        seen.add(pid)
        value: Any
        if kind == codes.P_BYTE:
            value = pr.u8()
        elif kind == codes.P_U16:
            value = pr.u16be()
        elif kind == codes.P_U32:
            value = pr.u32be()
        elif kind == codes.P_VARINT:
            value = read_varint(pr)
        elif kind == codes.P_UTF8:
            value = read_string(pr, ctx, name)
        elif kind == codes.P_BINARY:
            raw = read_binary(pr)
            value = len(raw) if pid in codes.SECRET_PROPERTIES else raw[:BINARY_PREVIEW].hex()
        else:  # P_PAIR
            value = (read_string(pr, ctx, name), read_string(pr, ctx, name))
        if pid in codes.REPEATABLE_PROPERTIES:
            values = out.setdefault(name, [])
            if len(values) < MAX_REPEATED_PROPERTIES:
                values.append(list(value) if isinstance(value, tuple) else value)
            else:
                out[name + "_dropped"] = out.get(name + "_dropped", 0) + 1
        else:
            out[name] = value
    return out
