"""Pure parsers for MQTT 3.1 / 3.1.1 / 5.0 control packets.

Every MQTT control packet starts with a fixed header (3.1.1 §2.2, 5.0 §2.1.1)::

    +-----------------------+---------------------------------+
    | byte 1                | bytes 2..5                      |
    | type (7-4) flags (3-0)| Remaining Length (VBI, 1-4 B)  |
    +-----------------------+---------------------------------+
    | variable header + payload: Remaining Length bytes         |
    +-----------------------------------------------------------+

The variable header of version 5 adds a Properties block to most packet types, so the body parsers
take the protocol level the session remembered from CONNECT (``ParseContext.version``).
Functions raise only :class:`~sensor.errors.Truncated` and :class:`~sensor.errors.Malformed`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sensor.dissectors.base import Reader
from sensor.dissectors.mqtt import codes
from sensor.dissectors.mqtt.properties import (
    ParseContext,
    check_topic_levels,
    decode_text,
    escape_bytes,
    parse_properties,
    read_binary,
    read_string,
)
from sensor.errors import Malformed, Truncated

MAX_REMAINING_LENGTH = 268_435_455  # 0xFF 0xFF 0xFF 0x7F (3.1.1 §2.2.3)


# --- records --------------------------------------------------------------------------------------


class FixedHeader(NamedTuple):
    packet_type: int
    flags: int
    remaining_length: int
    header_length: int  # 2..5 bytes


class Will(NamedTuple):
    topic: str
    qos: int
    retain: bool
    payload_size: int
    payload_preview: str
    properties: dict[str, Any]


class Connect(NamedTuple):
    protocol_name: str
    protocol_level: int
    clean_start: bool
    keep_alive: int
    client_id: str
    username: str | None
    password_present: bool
    password: str | None  # only when the session logs passwords
    will: Will | None
    properties: dict[str, Any]


class Connack(NamedTuple):
    session_present: bool
    code: int
    properties: dict[str, Any]


class Publish(NamedTuple):
    topic: str
    qos: int
    retain: bool
    dup: bool
    packet_id: int  # 0 for QoS 0
    payload_size: int
    payload_preview: str
    properties: dict[str, Any]
    topic_alias: int  # 0 when absent


class PacketIdAck(NamedTuple):
    """PUBACK, PUBREC, PUBREL, PUBCOMP (3.1.1 §3.4-3.7, 5.0 §3.4-3.7)."""

    packet_id: int
    code: int
    properties: dict[str, Any]


class Subscription(NamedTuple):
    topic_filter: str
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int


class Subscribe(NamedTuple):
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: dict[str, Any]


class Unsubscribe(NamedTuple):
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: dict[str, Any]


class CodesAck(NamedTuple):
    """SUBACK and UNSUBACK: one return/reason code per filter (v3 UNSUBACK has none)."""

    packet_id: int
    codes: tuple[int, ...]
    properties: dict[str, Any]


class ReasonOnly(NamedTuple):
    """DISCONNECT and AUTH (5.0 §3.14, §3.15); PINGREQ/PINGRESP and v3 DISCONNECT carry nothing."""

    code: int
    properties: dict[str, Any]


MqttMessage = Connect | Connack | Publish | PacketIdAck | Subscribe | Unsubscribe | CodesAck | ReasonOnly


# --- fixed header ---------------------------------------------------------------------------------


def parse_fixed_header(buf: bytes | bytearray, pos: int = 0) -> FixedHeader:
    """Fixed header at ``buf[pos:]``; Remaining Length capped at 4 bytes (hostile input Q1)."""
    end = len(buf)
    if pos + 2 > end:
        raise Truncated("fixed header")
    first = buf[pos]
    value = 0
    i = pos + 1
    for shift in (0, 7, 14, 21):
        if i >= end:
            raise Truncated("remaining length")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return FixedHeader(first >> 4, first & 0x0F, value, i - pos)
    raise Malformed("remaining_length_too_long", "remaining length longer than 4 bytes")


def check_flags(packet_type: int, flags: int, version: int) -> None:
    """Fixed-header flag rules (3.1.1 §2.2.2 [MQTT-2.2.2-1/2], 5.0 §2.1.3, QoS 3 [MQTT-3.3.1-4])."""
    if packet_type == codes.PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise Malformed("invalid_qos", "PUBLISH with QoS 3")
        if qos == 0 and flags & 0x08:
            raise Malformed("invalid_flags", "PUBLISH QoS 0 with DUP set")
        return
    required = codes.REQUIRED_FLAGS[packet_type]
    if flags == required:
        return
    # MQTT 3.1 (MQIsdp) let PUBREL/SUBSCRIBE/UNSUBSCRIBE set DUP on retransmission.
    if version == 3 and required == 2 and flags == 0x0A:
        return
    raise Malformed("invalid_flags", f"{codes.PACKET_TYPE_NAMES[packet_type]} flags 0x{flags:x}")


# --- bodies ---------------------------------------------------------------------------------------


def _packet_id(r: Reader) -> int:
    pid = r.u16be()
    if pid == 0:
        raise Malformed("zero_packet_id", "Packet Identifier 0 [MQTT-2.3.1-1]")
    return pid


def _preview(payload: bytes, ctx: ParseContext) -> str:
    return escape_bytes(payload[: ctx.payload_preview]) if ctx.payload_preview > 0 else ""


def parse_connect(r: Reader, ctx: ParseContext) -> Connect:
    """CONNECT (3.1.1 §3.1, 5.0 §3.1). The level read here decides whether properties follow.

    ```
    | name (u16+bytes) | level u8 | flags u8 | keep alive u16 | [props] |
    | client id | [will props] [will topic] [will payload] | [user name] | [password] |
    ```
    flags: 7 user name, 6 password, 5 will retain, 4-3 will QoS, 2 will, 1 clean start, 0 reserved.
    """
    name = r.bytes(r.u16be())
    level = r.u8()
    levels = codes.PROTOCOL_NAMES.get(name)
    if levels is None:
        raise Malformed("unknown_protocol_name", escape_bytes(name[:32]))
    if level not in levels:
        raise Malformed("unsupported_protocol_level", f"{name.decode()} level {level}")
    # Remembered at once: the rest of this CONNECT, and of the connection, depends on it.
    ctx.version = level
    flags = r.u8()
    if flags & 0x01:
        raise Malformed("invalid_flags", "CONNECT reserved flag set [MQTT-3.1.2-3]")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if will_qos == 3:
        raise Malformed("invalid_qos", "will QoS 3 [MQTT-3.1.2-14]")
    if not will_flag and (will_qos or will_retain):
        raise Malformed("invalid_flags", "will QoS/retain without will flag [MQTT-3.1.2-11]")
    has_user = bool(flags & 0x80)
    has_password = bool(flags & 0x40)
    if has_password and not has_user and level < 5:
        raise Malformed("invalid_flags", "password without user name [MQTT-3.1.2-22]")
    keep_alive = r.u16be()
    props = parse_properties(r, codes.CONNECT, ctx) if level == 5 else {}
    client_id = read_string(r, ctx, "client id")
    will = None
    if will_flag:
        will_props = parse_properties(r, codes.WILL, ctx) if level == 5 else {}
        raw_topic = r.bytes(r.u16be())
        check_topic_levels(raw_topic, ctx, "will topic")
        will_payload = read_binary(r)
        will = Will(
            decode_text(raw_topic, ctx, "will topic"),
            will_qos,
            will_retain,
            len(will_payload),
            _preview(will_payload, ctx),
            will_props,
        )
    username = read_string(r, ctx, "user name") if has_user else None
    password = None
    if has_password:
        secret = read_binary(r)
        if ctx.log_passwords:
            password = escape_bytes(secret)
    if r.remaining:
        raise Malformed("trailing_bytes", f"{r.remaining} bytes after CONNECT payload")
    return Connect(
        name.decode("ascii"),
        level,
        bool(flags & 0x02),
        keep_alive,
        client_id,
        username,
        has_password,
        password,
        will,
        props,
    )


def parse_connack(r: Reader, ctx: ParseContext) -> Connack:
    """CONNACK (3.1.1 §3.2: exactly 2 bytes; 5.0 §3.2: flags, reason code, properties)."""
    ack_flags = r.u8()
    if ack_flags & 0xFE:
        raise Malformed("invalid_flags", "CONNACK reserved acknowledge flags [MQTT-3.2.2-1]")
    code = r.u8()
    props = parse_properties(r, codes.CONNACK, ctx) if ctx.version == 5 else {}
    if r.remaining:
        raise Malformed("trailing_bytes", f"{r.remaining} bytes after CONNACK")
    return Connack(bool(ack_flags & 1), code, props)


def parse_publish(r: Reader, flags: int, ctx: ParseContext) -> Publish:
    """PUBLISH (3.1.1 §3.3, 5.0 §3.3): topic, packet id when QoS > 0, [props], payload.

    An empty topic is valid only in version 5 with a Topic Alias (5.0 §3.3.2.3.4); the session
    resolves the alias. Wildcards in a topic name are a protocol error [MQTT-3.3.2-2].
    """
    qos = (flags >> 1) & 3
    raw_topic = r.bytes(r.u16be())
    packet_id = _packet_id(r) if qos else 0
    props = parse_properties(r, codes.PUBLISH, ctx) if ctx.version == 5 else {}
    alias = props.get("topic_alias", 0)
    if not raw_topic and "topic_alias" not in props:
        raise Malformed("empty_topic", "PUBLISH with a zero-length topic and no topic alias")
    if raw_topic:
        if b"+" in raw_topic or b"#" in raw_topic:
            ctx.issues.append(("mqtt.wildcard_in_topic", escape_bytes(raw_topic[:64])))
        check_topic_levels(raw_topic, ctx, "topic")
    topic = decode_text(raw_topic, ctx, "topic") if raw_topic else ""
    size = r.remaining
    preview = _preview(bytes(r.buf[r.pos : min(r.end, r.pos + ctx.payload_preview)]), ctx) if size else ""
    r.pos = r.end
    return Publish(topic, qos, bool(flags & 1), bool(flags & 8), packet_id, size, preview, props, alias)


def parse_packet_id_ack(r: Reader, packet_type: int, ctx: ParseContext) -> PacketIdAck:
    """PUBACK/PUBREC/PUBREL/PUBCOMP: packet id; in v5 an optional reason code and properties."""
    packet_id = _packet_id(r)
    code = 0
    props: dict[str, Any] = {}
    if ctx.version == 5:
        if r.remaining:
            code = r.u8()
        if r.remaining:
            props = parse_properties(r, packet_type, ctx)
    if r.remaining:
        raise Malformed("trailing_bytes", f"{r.remaining} bytes after {codes.PACKET_TYPE_NAMES[packet_type]}")
    return PacketIdAck(packet_id, code, props)


def parse_subscribe(r: Reader, ctx: ParseContext) -> Subscribe:
    """SUBSCRIBE (3.1.1 §3.8, 5.0 §3.8): packet id, [props], then (filter, options) pairs.

    options: bits 1-0 QoS, 2 No Local, 3 Retain As Published, 5-4 Retain Handling, 7-6 reserved
    (3.1.1: bits 7-2 reserved). At least one filter [MQTT-3.8.3-3]; at most ``max_filters`` kept.
    """
    packet_id = _packet_id(r)
    props = parse_properties(r, codes.SUBSCRIBE, ctx) if ctx.version == 5 else {}
    subs: list[Subscription] = []
    dropped = 0
    while r.remaining:
        raw = r.bytes(r.u16be())
        options = r.u8()
        qos = options & 3
        if qos == 3:
            raise Malformed("invalid_qos", "subscription QoS 3")
        reserved = 0xC0 if ctx.version == 5 else 0xFC
        if options & reserved:
            raise Malformed("invalid_flags", f"subscription options 0x{options:02x} [MQTT-3.8.3-4]")
        if ctx.version == 5 and (options >> 4) & 3 == 3:
            raise Malformed("invalid_flags", "retain handling 3")
        if len(subs) >= ctx.max_filters:
            dropped += 1
            continue
        check_topic_levels(raw, ctx, "topic filter")
        subs.append(
            Subscription(
                decode_text(raw, ctx, "topic filter"),
                qos,
                bool(options & 4),
                bool(options & 8),
                (options >> 4) & 3,
            )
        )
    if not subs and not dropped:
        raise Malformed("no_topic_filter", "SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
    if dropped:
        ctx.issues.append(("mqtt.too_many_topics", f"{len(subs) + dropped} filters in one SUBSCRIBE"))
    return Subscribe(packet_id, tuple(subs), props)


def parse_unsubscribe(r: Reader, ctx: ParseContext) -> Unsubscribe:
    """UNSUBSCRIBE (3.1.1 §3.10, 5.0 §3.10): packet id, [props], one or more filters."""
    packet_id = _packet_id(r)
    props = parse_properties(r, codes.UNSUBSCRIBE, ctx) if ctx.version == 5 else {}
    filters: list[str] = []
    dropped = 0
    while r.remaining:
        raw = r.bytes(r.u16be())
        if len(filters) >= ctx.max_filters:
            dropped += 1
            continue
        check_topic_levels(raw, ctx, "topic filter")
        filters.append(decode_text(raw, ctx, "topic filter"))
    if not filters and not dropped:
        raise Malformed("no_topic_filter", "UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    if dropped:
        ctx.issues.append(("mqtt.too_many_topics", f"{len(filters) + dropped} filters in one UNSUBSCRIBE"))
    return Unsubscribe(packet_id, tuple(filters), props)


def parse_codes_ack(r: Reader, packet_type: int, ctx: ParseContext) -> CodesAck:
    """SUBACK (§3.9) / UNSUBACK (§3.11): packet id, [props], one code per filter (v3 UNSUBACK: none)."""
    packet_id = _packet_id(r)
    props = parse_properties(r, packet_type, ctx) if ctx.version == 5 else {}
    if packet_type == codes.UNSUBACK and ctx.version < 5:
        if r.remaining:
            raise Malformed("trailing_bytes", "UNSUBACK longer than 2 bytes")
        return CodesAck(packet_id, (), props)
    n = min(r.remaining, ctx.max_filters)
    return_codes = tuple(r.bytes(n))
    r.pos = r.end
    if not return_codes:
        raise Malformed("no_return_codes", f"{codes.PACKET_TYPE_NAMES[packet_type]} without codes")
    return CodesAck(packet_id, return_codes, props)


def parse_reason_only(r: Reader, packet_type: int, ctx: ParseContext) -> ReasonOnly:
    """DISCONNECT (5.0 §3.14) and AUTH (5.0 §3.15): empty means reason 0; PING*/v3 DISCONNECT: empty."""
    code = 0
    props: dict[str, Any] = {}
    if ctx.version == 5 and packet_type in (codes.DISCONNECT, codes.AUTH):
        if r.remaining:
            code = r.u8()
        if r.remaining:
            props = parse_properties(r, packet_type, ctx)
    if r.remaining:
        raise Malformed("trailing_bytes", f"{codes.PACKET_TYPE_NAMES[packet_type]} with {r.remaining} bytes")
    return ReasonOnly(code, props)


def parse_body(packet_type: int, flags: int, r: Reader, ctx: ParseContext) -> MqttMessage:
    """Parse the body of one complete packet; ``r`` spans exactly Remaining Length bytes.

    A body that ends early is malformed here (the whole packet is in ``r``), so :class:`Truncated`
    from a field read becomes ``Malformed("field_overrun")`` (hostile inputs Q4, Q5).
    """
    try:
        if packet_type == codes.PUBLISH:
            return parse_publish(r, flags, ctx)
        if codes.PUBACK <= packet_type <= codes.PUBCOMP:
            return parse_packet_id_ack(r, packet_type, ctx)
        if packet_type == codes.CONNECT:
            return parse_connect(r, ctx)
        if packet_type == codes.CONNACK:
            return parse_connack(r, ctx)
        if packet_type == codes.SUBSCRIBE:
            return parse_subscribe(r, ctx)
        if packet_type in (codes.SUBACK, codes.UNSUBACK):
            return parse_codes_ack(r, packet_type, ctx)
        if packet_type == codes.UNSUBSCRIBE:
            return parse_unsubscribe(r, ctx)
        if packet_type in (codes.PINGREQ, codes.PINGRESP, codes.DISCONNECT, codes.AUTH):
            return parse_reason_only(r, packet_type, ctx)
    except Truncated as exc:
        raise Malformed("field_overrun", str(exc)) from exc
    raise Malformed("unassigned_msg_type", f"packet type {packet_type}")
