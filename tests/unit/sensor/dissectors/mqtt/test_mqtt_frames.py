"""Pure MQTT parsers: fixed header, flags, and every packet body in 3.1.1 and 5.0."""

from __future__ import annotations

import pytest
from mqtt_testkit import (
    ack,
    connack,
    connect,
    mstr,
    p_str,
    p_u16,
    p_u32,
    packet,
    props,
    publish,
    subscribe,
    varint,
)

from sensor.dissectors.base import Reader
from sensor.dissectors.mqtt import codes
from sensor.dissectors.mqtt.frames import (
    CodesAck,
    Connack,
    Connect,
    PacketIdAck,
    Publish,
    ReasonOnly,
    Subscribe,
    Unsubscribe,
    check_flags,
    parse_body,
    parse_fixed_header,
)
from sensor.dissectors.mqtt.properties import ParseContext, parse_properties, read_varint
from sensor.errors import Malformed, Truncated


def parse(raw: bytes, version: int = 4, **kw: object) -> tuple[object, ParseContext]:
    ctx = ParseContext(version=version, **kw)  # type: ignore[arg-type]
    hdr = parse_fixed_header(raw)
    check_flags(hdr.packet_type, hdr.flags, version)
    r = Reader(raw, hdr.header_length, hdr.header_length + hdr.remaining_length)
    return parse_body(hdr.packet_type, hdr.flags, r, ctx), ctx


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        (b"\x00", 0),
        (b"\x7f", 127),
        (b"\x80\x01", 128),
        (b"\xff\x7f", 16383),
        (b"\xff\xff\xff\x7f", 268_435_455),
    ],
)
def test_remaining_length_varint(encoded: bytes, value: int) -> None:
    hdr = parse_fixed_header(b"\x30" + encoded)
    assert hdr.remaining_length == value
    assert hdr.header_length == 1 + len(encoded)
    assert varint(value) == encoded
    assert read_varint(Reader(encoded)) == value


def test_remaining_length_fifth_byte_rejected() -> None:
    with pytest.raises(Malformed) as exc:
        parse_fixed_header(b"\x30\xff\xff\xff\xff\x7f")
    assert exc.value.reason == "remaining_length_too_long"


def test_fixed_header_needs_more() -> None:
    with pytest.raises(Truncated):
        parse_fixed_header(b"\x30")
    with pytest.raises(Truncated):
        parse_fixed_header(b"\x30\x80\x80")


@pytest.mark.parametrize(
    ("ptype", "flags", "ok"),
    [
        (codes.PUBREL, 2, True),
        (codes.PUBREL, 0, False),  # the broker bug of nats-server e5d3f4a
        (codes.SUBSCRIBE, 2, True),
        (codes.SUBSCRIBE, 0, False),
        (codes.UNSUBSCRIBE, 2, True),
        (codes.CONNECT, 1, False),
        (codes.PINGREQ, 0, True),
        (codes.PINGREQ, 8, False),
        (codes.PUBLISH, 0b1101, True),  # DUP QoS 2 RETAIN
        (codes.PUBLISH, 0b1000, False),  # DUP with QoS 0
    ],
)
def test_fixed_header_flags(ptype: int, flags: int, ok: bool) -> None:
    if ok:
        check_flags(ptype, flags, 4)
    else:
        with pytest.raises(Malformed):
            check_flags(ptype, flags, 4)


def test_publish_qos3_is_invalid_qos() -> None:
    with pytest.raises(Malformed) as exc:
        check_flags(codes.PUBLISH, 0b0110, 4)
    assert exc.value.reason == "invalid_qos"


def test_v31_allows_dup_on_subscribe() -> None:
    check_flags(codes.SUBSCRIBE, 0x0A, 3)
    with pytest.raises(Malformed):
        check_flags(codes.SUBSCRIBE, 0x0A, 4)


def test_connect_v311_fields() -> None:
    raw = connect(
        "dev-1", level=4, user="alice", password=b"s3cret", keep_alive=30, will=("last/will", b"bye", 1, True)
    )
    msg, ctx = parse(raw, version=0)
    assert isinstance(msg, Connect)
    assert (msg.protocol_name, msg.protocol_level, msg.client_id) == ("MQTT", 4, "dev-1")
    assert msg.keep_alive == 30 and msg.clean_start
    assert msg.username == "alice" and msg.password_present and msg.password is None
    assert msg.will is not None and msg.will.topic == "last/will" and msg.will.qos == 1 and msg.will.retain
    assert msg.will.payload_size == 3
    assert ctx.version == 4


def test_connect_password_kept_only_on_request() -> None:
    raw = connect("d", user="u", password=b"pw")
    msg, _ = parse(raw, log_passwords=True)
    assert isinstance(msg, Connect) and msg.password == "pw"


def test_connect_v31_mqisdp() -> None:
    msg, _ = parse(connect("old", level=3))
    assert isinstance(msg, Connect) and msg.protocol_name == "MQIsdp" and msg.protocol_level == 3


def test_connect_v5_properties_and_will_properties() -> None:
    raw = connect(
        "v5",
        level=5,
        connect_props=props(p_u16(0x22, 10), p_u32(0x11, 300)),
        will=("w/t", b"gone", 0, False),
        will_props=props(p_u32(0x18, 5), p_str(0x03, "text/plain")),
    )
    msg, ctx = parse(raw, version=0)
    assert isinstance(msg, Connect)
    assert msg.properties == {"topic_alias_maximum": 10, "session_expiry_interval": 300}
    assert msg.will is not None
    assert msg.will.properties == {"will_delay_interval": 5, "content_type": "text/plain"}
    assert msg.client_id == "v5" and ctx.version == 5


@pytest.mark.parametrize(
    ("name", "level", "reason"),
    [
        (b"MQTT", 3, "unsupported_protocol_level"),
        (b"MQIsdp", 4, "unsupported_protocol_level"),
        (b"HTTP", 4, "unknown_protocol_name"),
    ],
)
def test_connect_bad_name_or_level(name: bytes, level: int, reason: str) -> None:
    raw = packet(0x10, mstr(name) + bytes([level, 2, 0, 60]) + mstr("x"))
    with pytest.raises(Malformed) as exc:
        parse(raw)
    assert exc.value.reason == reason


def test_connect_v311_password_without_user_is_malformed() -> None:
    raw = packet(0x10, mstr("MQTT") + bytes([4, 0x42, 0, 60]) + mstr("x") + mstr("pw"))
    with pytest.raises(Malformed):
        parse(raw)


def test_connack_v311_and_v5() -> None:
    msg, _ = parse(connack(5))
    assert msg == Connack(False, 5, {})
    msg, _ = parse(connack(0x86, level=5, connack_props=props(p_u16(0x22, 7))), version=5)
    assert msg == Connack(False, 0x86, {"topic_alias_maximum": 7})
    assert codes.reason_name(0x86, codes.CONNACK, 5) == "bad_user_name_or_password"
    assert codes.reason_name(4, codes.CONNACK, 4) == "bad_user_name_or_password"


def test_connack_v311_with_extra_byte_is_malformed() -> None:
    with pytest.raises(Malformed):
        parse(packet(0x20, b"\x00\x00\x00"))


def test_publish_v311() -> None:
    msg, _ = parse(publish("a/b", b"hello", qos=1, packet_id=7, retain=True))
    assert isinstance(msg, Publish)
    assert (msg.topic, msg.qos, msg.retain, msg.dup, msg.packet_id, msg.payload_size) == (
        "a/b",
        1,
        True,
        False,
        7,
        5,
    )
    assert msg.payload_preview == "hello"


def test_publish_payload_preview_is_bounded() -> None:
    msg, _ = parse(publish("t", b"\xff" * 1000), payload_preview=4)
    assert isinstance(msg, Publish) and msg.payload_size == 1000 and msg.payload_preview == "\\xff" * 4


def test_publish_v5_alias_and_empty_topic() -> None:
    msg, _ = parse(publish("", b"p", level=5, publish_props=props(p_u16(0x23, 3))), version=5)
    assert isinstance(msg, Publish) and msg.topic == "" and msg.topic_alias == 3


def test_publish_packet_id_zero_is_malformed() -> None:
    with pytest.raises(Malformed):
        parse(publish("t", qos=1, packet_id=0))


def test_acks_v311_and_v5() -> None:
    for ptype in (codes.PUBACK, codes.PUBREC, codes.PUBREL, codes.PUBCOMP):
        msg, _ = parse(ack(ptype, 9))
        assert msg == PacketIdAck(9, 0, {})
    msg, _ = parse(ack(codes.PUBACK, 9, 0x10), version=5)
    assert msg == PacketIdAck(9, 0x10, {})
    with pytest.raises(Malformed):
        parse(ack(codes.PUBACK, 9, 0x10), version=4)


def test_subscribe_options_v5() -> None:
    raw = subscribe(4, [("a/+", 0b00101110), ("b/#", 1)], level=5)
    msg, _ = parse(raw, version=5)
    assert isinstance(msg, Subscribe) and msg.packet_id == 4
    first = msg.subscriptions[0]
    assert (
        first.topic_filter,
        first.qos,
        first.no_local,
        first.retain_as_published,
        first.retain_handling,
    ) == (
        "a/+",
        2,
        True,
        True,
        2,
    )


def test_subscribe_reserved_option_bits_v311() -> None:
    with pytest.raises(Malformed):
        parse(subscribe(1, [("a", 0x04)]))


def test_subscribe_without_filters_is_malformed() -> None:
    with pytest.raises(Malformed):
        parse(packet(0x82, b"\x00\x01"))


def test_suback_unsubscribe_unsuback() -> None:
    msg, _ = parse(packet(0x90, b"\x00\x05\x00\x01\x80"))
    assert msg == CodesAck(5, (0, 1, 0x80), {})
    msg, _ = parse(packet(0xA2, b"\x00\x06" + mstr("a") + mstr("b")))
    assert msg == Unsubscribe(6, ("a", "b"), {})
    msg, _ = parse(packet(0xB0, b"\x00\x06"))
    assert msg == CodesAck(6, (), {})
    msg, _ = parse(packet(0xB0, b"\x00\x06\x00\x11"), version=5)
    assert msg == CodesAck(6, (0x11,), {})


def test_ping_disconnect_auth() -> None:
    assert parse(b"\xc0\x00")[0] == ReasonOnly(0, {})
    assert parse(b"\xd0\x00")[0] == ReasonOnly(0, {})
    assert parse(b"\xe0\x00")[0] == ReasonOnly(0, {})
    msg, _ = parse(packet(0xE0, b"\x8e" + props(p_str(0x1F, "bye"))), version=5)
    assert msg == ReasonOnly(0x8E, {"reason_string": "bye"})
    msg, _ = parse(packet(0xF0, b"\x18" + props(p_str(0x15, "SCRAM"))), version=5)
    assert msg == ReasonOnly(0x18, {"authentication_method": "SCRAM"})
    with pytest.raises(Malformed):
        parse(b"\xe0\x01\x00", version=4)


def test_properties_unknown_duplicate_and_misplaced() -> None:
    with pytest.raises(Malformed) as exc:
        parse_properties(Reader(props(b"\x7f\x00")), codes.PUBLISH, ParseContext())
    assert exc.value.reason == "unknown_property"
    with pytest.raises(Malformed) as exc:
        parse_properties(Reader(props(p_u16(0x23, 1), p_u16(0x23, 2))), codes.PUBLISH, ParseContext())
    assert exc.value.reason == "duplicate_property"
    with pytest.raises(Malformed) as exc:  # Topic Alias in a will
        parse_properties(Reader(props(p_u16(0x23, 1))), codes.WILL, ParseContext())
    assert exc.value.reason == "property_not_allowed"


def test_user_properties_repeat_and_are_bounded() -> None:
    many = props(*[b"\x26" + mstr("k") + mstr("v")] * 100)
    out = parse_properties(Reader(many), codes.PUBLISH, ParseContext())
    assert len(out["user_property"]) == 32 and out["user_property_dropped"] == 68


def test_authentication_data_is_not_copied() -> None:
    out = parse_properties(Reader(props(b"\x16" + mstr(b"secret-bytes"))), codes.CONNECT, ParseContext())
    assert out == {"authentication_data": 12}


def test_unknown_packet_type_raises() -> None:
    with pytest.raises(Malformed) as exc:
        parse_body(0, 0, Reader(b""), ParseContext())
    assert exc.value.reason == "unassigned_msg_type"
