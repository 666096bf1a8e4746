"""Hostile inputs Q1-Q11 of HOSTILE_INPUTS.md: each fed whole, byte by byte and with trailing bytes."""

from __future__ import annotations

import json

from mqtt_testkit import (
    FLOW,
    connack,
    connect,
    feed_all,
    kinds,
    mstr,
    p_u16,
    packet,
    props,
    publish,
    split_invariant,
    subscribe,
    varint,
)

from sensor.dissectors.mqtt import MqttPacket, MqttSession
from sensor.dissectors.mqtt.frames import Connect, Publish, Subscribe
from sensor.limits import Limits
from sensor.records import AppEvent

C, S = True, False


def new(limits: Limits | None = None) -> MqttSession:
    return MqttSession(FLOW, limits or Limits())


def connected(level: int = 4) -> list[tuple[bool, bytes]]:
    return [(C, connect("h", level=level)), (S, connack(0, level=level))]


def pk(events: list[AppEvent]) -> list[MqttPacket]:
    return [e for e in events if isinstance(e, MqttPacket)]


def test_Q1_five_byte_remaining_length_is_malformed() -> None:
    for vector in (b"\x30\xff\xff\xff\xff\x7f", b"\x03\xf9\xff\xff\xff\xff"):
        events = split_invariant(new, [*connected(), (C, vector)])
        assert kinds(events) == ["mqtt.malformed"], vector


def test_Q1_session_recovers_after_bad_varint() -> None:
    s = new()
    out = feed_all(s, [*connected(), (C, b"\x30\xff\xff\xff\xff\x7f"), (C, publish("ok", b"1"))])
    assert [p.topic for p in pk(out) if p.packet_type == 3] == ["ok"]


def test_Q2_huge_remaining_length_is_not_preallocated() -> None:
    vector = b"\x30\xff\xff\xff\x7f" + b"A" * 10
    s = new()
    events = split_invariant(new, [*connected(), (C, vector)])
    assert kinds(events) == ["mqtt.truncated"]
    feed_all(s, [*connected(), (C, vector)])
    # nothing of the 256 MiB packet is held: only the count of bytes still to skip
    assert len(s._to_server.buf) == 0
    assert s._to_server.skip == 268_435_455 + 5 - len(vector)
    assert pk(events)[-1].truncated


def test_Q3_publish_empty_topic_and_empty_connect() -> None:
    events = split_invariant(new, [*connected(), (C, publish(b"", b"payload"))])
    assert kinds(events) == ["mqtt.malformed"]
    events = split_invariant(new, [(C, b"\x10\x00")])
    assert kinds(events) == ["mqtt.malformed"]
    assert pk(events)[0].malformed == "field_overrun"


def test_Q4_topic_length_beyond_remaining_length() -> None:
    vector = packet(0x30, b"\xff\xf0" + b"abc")
    events = split_invariant(new, [*connected(), (C, vector)])
    assert kinds(events) == ["mqtt.malformed"]
    assert pk(events)[-1].malformed == "field_overrun"


def test_Q5_property_length_beyond_remaining_length_one_anomaly() -> None:
    vector = packet(0x30, mstr("t") + varint(1000) + b"\x01\x00")
    events = split_invariant(new, [*connected(level=5), (C, vector)])
    assert kinds(events) == ["mqtt.malformed"]


def test_Q6_duplicate_unknown_and_misplaced_properties() -> None:
    dup = packet(0x30, mstr("t") + props(p_u16(0x23, 1), p_u16(0x23, 1)))
    unknown = packet(0x30, mstr("t") + props(b"\x7f\x01"))
    will_bad = connect("w", level=5, will=("wt", b"x", 0, False), will_props=props(p_u16(0x23, 1)))
    for vector in (dup, unknown):
        assert kinds(split_invariant(new, [*connected(level=5), (C, vector)])) == ["mqtt.malformed"]
    assert kinds(split_invariant(new, [(C, will_bad)])) == ["mqtt.malformed"]
    # a v5 CONNACK sent by the client (CVE-2021-28166) with a bad property block
    bad_connack = packet(0x20, b"\x00\x00" + varint(3) + b"\xe0\x00")
    events = split_invariant(new, [*connected(level=5), (C, bad_connack)])
    assert kinds(events) == ["mqtt.wrong_direction", "mqtt.malformed"]


def test_Q6_state_stays_flat_over_many_repeats() -> None:
    s = new()
    feed_all(s, connected(level=5))
    vector = packet(0x30, mstr("t") + props(p_u16(0x23, 1), p_u16(0x23, 1)))
    for _ in range(2000):
        s.feed(vector, True, 1.0)
    assert len(s._to_server.buf) == 0 and not s.pending and not s._to_server.aliases


def test_Q7_reserved_types_qos3_and_ping_with_body() -> None:
    events = split_invariant(new, [*connected(), (C, b"\x00\x00")])
    assert kinds(events) == ["mqtt.unassigned_msg_type"]
    events = split_invariant(new, [*connected(), (C, b"\xf0\x00")])  # AUTH does not exist in 3.1.1
    assert kinds(events) == ["mqtt.unassigned_msg_type"]
    events = split_invariant(new, [*connected(), (C, b"\x36\x05" + mstr("t") + b"\x00\x01")])
    assert kinds(events) == ["mqtt.invalid_qos"]
    events = split_invariant(new, [*connected(), (C, b"\xc0\x01\x00")])
    assert kinds(events) == ["mqtt.malformed"]


def test_Q8_subscribe_with_65400_slashes() -> None:
    vector = subscribe(1, [("/" * 65400, 0)])
    events = split_invariant(new, [*connected(), (C, vector)])
    assert kinds(events) == ["mqtt.topic_levels_exceeded"]
    sub = pk(events)[-1].message
    assert isinstance(sub, Subscribe) and len(sub.subscriptions[0].topic_filter) == 256  # max_field_chars


def test_Q9_invalid_utf8_and_nul_are_flagged_and_escaped() -> None:
    bad_topic = publish(b"plant/\xff\xfe/x", b"1")
    nul_client = connect("dev\x00ice")
    events = split_invariant(new, [(C, nul_client), (S, connack()), (C, bad_topic)])
    assert kinds(events) == ["mqtt.invalid_utf8", "mqtt.invalid_utf8"]
    text = json.dumps([e.eve_body() for e in events], ensure_ascii=False)
    json.loads(text)
    conn, pub = pk(events)[0].message, pk(events)[-1].message
    assert isinstance(conn, Connect) and conn.client_id == "dev\\x00ice"
    assert isinstance(pub, Publish) and pub.topic == "plant/\\xff\\xfe/x"
    text.encode("utf-8")  # no lone surrogates made it into the JSON


def test_Q10_unanswered_qos1_publishes_are_bounded() -> None:
    limits = Limits(mqtt_max_transactions=100)
    s = new(limits)
    out = feed_all(s, connected())[:0]
    stream = b"".join(publish("t", b"v", qos=1, packet_id=i) for i in range(1, 3001))
    out += s.feed(stream, True, 1.0)
    assert len(s.pending) == 100
    assert kinds(out) == ["mqtt.too_many_transactions"]
    assert s.evicted == 2900


def test_Q10_packet_id_reuse() -> None:
    vectors = [(C, publish("t", qos=1, packet_id=9)), (C, publish("t", qos=1, packet_id=9))]
    events = split_invariant(new, [*connected(), *vectors])
    assert kinds(events) == ["mqtt.packet_id_reuse", "mqtt.incomplete_qos"]


def test_Q11_first_packet_not_connect() -> None:
    events = split_invariant(new, [(C, publish("early", b"1")), (C, publish("again", b"2"))])
    assert kinds(events) == ["mqtt.missing_connect"]
    assert [p.topic for p in pk(events)] == ["early", "again"]
