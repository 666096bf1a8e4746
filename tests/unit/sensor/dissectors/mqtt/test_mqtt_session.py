"""MQTT session: events per packet type, split points, versions, aliases, QoS flows, stats."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mqtt_testkit import (
    FLOW,
    ack,
    bytewise,
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
)

from sensor.dissectors.mqtt import MqttDissector, MqttPacket, MqttSession, codes
from sensor.dissectors.mqtt.frames import Connect, Publish
from sensor.limits import Limits
from sensor.records import AppEvent, ProtocolAnomaly

C, S = True, False  # to server, to client


def new(limits: Limits | None = None, **kw: Any) -> MqttSession:
    return MqttSession(FLOW, limits or Limits(), **kw)


def packets(events: list[AppEvent]) -> list[MqttPacket]:
    return [e for e in events if isinstance(e, MqttPacket)]


def types(events: list[AppEvent]) -> list[str]:
    return [p.type_name for p in packets(events)]


V311_CONVERSATION = [
    (C, connect("sensor-7", user="op", password=b"pw")),
    (S, connack(0)),
    (C, subscribe(1, [("plant/+/cmd", 1)])),
    (S, packet(0x90, b"\x00\x01\x01")),
    (C, publish("plant/a/telemetry", b"21.5", qos=1, packet_id=2)),
    (S, ack(codes.PUBACK, 2)),
    (C, publish("plant/a/telemetry", b"21.6", qos=2, packet_id=3)),
    (S, ack(codes.PUBREC, 3)),
    (C, ack(codes.PUBREL, 3)),
    (S, ack(codes.PUBCOMP, 3)),
    (C, packet(0xA2, b"\x00\x04" + mstr("plant/+/cmd"))),
    (S, packet(0xB0, b"\x00\x04")),
    (C, b"\xc0\x00"),
    (S, b"\xd0\x00"),
    (C, b"\xe0\x00"),
]


def test_v311_conversation_every_type_and_split_points() -> None:
    events = split_invariant(new, V311_CONVERSATION)
    assert kinds(events) == []
    assert types(events) == [
        "CONNECT", "CONNACK", "SUBSCRIBE", "SUBACK", "PUBLISH", "PUBACK", "PUBLISH", "PUBREC",
        "PUBREL", "PUBCOMP", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT",
    ]  # fmt: skip
    pk = packets(events)
    assert all(p.client_id == "sensor-7" and p.protocol_version == 4 for p in pk)
    assert [p.qos_flow for p in pk[4:10]] == [
        "published", "complete", "published", "awaiting_pubrel", "awaiting_pubcomp", "complete",
    ]  # fmt: skip
    assert pk[9].topic == "plant/a/telemetry"
    for e in events:  # every body is JSON
        json.dumps(e.eve_body())


def test_password_never_in_events_by_default() -> None:
    events = feed_all(new(), [(C, connect("d", user="u", password=b"hunter2"))])
    text = json.dumps([e.eve_body() for e in events])
    assert "hunter2" not in text and '"password_present": true' in text
    events = feed_all(new(log_passwords=True), [(C, connect("d", user="u", password=b"hunter2"))])
    assert "hunter2" in json.dumps([e.eve_body() for e in events])


def test_two_packets_in_one_segment_and_one_packet_in_many() -> None:
    blob = connect("x") + publish("a", b"1") + publish("b", b"2" * 300)
    events = feed_all(new(), [(C, blob[:3]), (C, blob[3:200]), (C, blob[200:])])
    assert types(events) == ["CONNECT", "PUBLISH", "PUBLISH"]


def test_connack_refusal_is_auth_failure_v311_and_v5() -> None:
    events = split_invariant(new, [(C, connect("x", user="u", password=b"bad")), (S, connack(4))])
    assert kinds(events) == ["mqtt.auth_failure"]
    events = split_invariant(new, [(C, connect("x", level=5)), (S, connack(0x86, level=5))])
    assert kinds(events) == ["mqtt.auth_failure"]
    assert packets(events)[1].eve_body()["mqtt"]["connack"]["name"] == "bad_user_name_or_password"


def test_double_connect() -> None:
    events = feed_all(new(), [(C, connect("a")), (S, connack()), (C, connect("b"))])
    assert kinds(events) == ["mqtt.double_connect"]


def test_wrong_direction() -> None:
    events = feed_all(new(), [(C, connect("a")), (C, connack())])
    assert kinds(events) == ["mqtt.wrong_direction"]


def v5_session_start(client_alias_max: int = 0, server_alias_max: int = 5) -> list[tuple[bool, bytes]]:
    cprops = props(p_u16(0x22, client_alias_max)) if client_alias_max else b""
    return [
        (C, connect("v5dev", level=5, connect_props=cprops)),
        (S, connack(0, level=5, connack_props=props(p_u16(0x22, server_alias_max)))),
    ]


def aliased(topic: str, alias: int, payload: bytes = b"v") -> bytes:
    return publish(topic, payload, level=5, publish_props=props(p_u16(0x23, alias)))


def test_v5_topic_alias_bound_then_resolved() -> None:
    events = split_invariant(new, [*v5_session_start(), (C, aliased("plant/x", 2)), (C, aliased("", 2))])
    pubs = [p.message for p in packets(events) if isinstance(p.message, Publish)]
    assert [p.topic for p in pubs] == ["plant/x", "plant/x"]
    assert kinds(events) == []


def test_v5_topic_alias_unknown_or_above_maximum() -> None:
    events = feed_all(
        new(), [*v5_session_start(server_alias_max=5), (C, aliased("", 3)), (C, aliased("t", 6))]
    )
    assert kinds(events) == ["mqtt.invalid_topic_alias", "mqtt.invalid_topic_alias"]


def test_v5_topic_alias_per_direction() -> None:
    # The server may alias only up to the client's maximum (here 4), separately from the client's map.
    chunks = [
        *v5_session_start(client_alias_max=4),
        (C, aliased("up", 1)),
        (S, aliased("", 1)),
        (S, aliased("down", 5)),
    ]
    events = feed_all(new(), chunks)
    assert kinds(events) == ["mqtt.invalid_topic_alias", "mqtt.invalid_topic_alias"]


def test_v5_aliases_not_allowed_when_not_announced() -> None:
    events = feed_all(new(), [(C, connect("v", level=5)), (S, connack(0, level=5)), (C, aliased("t", 1))])
    assert kinds(events) == ["mqtt.invalid_topic_alias"]


def test_v5_properties_in_every_packet_type() -> None:
    reason = props(b"\x1f" + mstr("why"))
    chunks = [
        *v5_session_start(),
        (C, publish("t", qos=2, packet_id=1, level=5)),
        (S, packet(0x50, b"\x00\x01\x00" + reason)),
        (C, packet(0x62, b"\x00\x01\x00" + reason)),
        (S, packet(0x70, b"\x00\x01\x00" + reason)),
        (C, subscribe(2, [("a", 0)], level=5)),
        (S, packet(0x90, b"\x00\x02" + reason + b"\x00")),
        (C, packet(0xA2, b"\x00\x03" + props() + mstr("a"))),
        (S, packet(0xB0, b"\x00\x03" + reason + b"\x00")),
        (C, packet(0xF0, b"\x19" + props(b"\x15" + mstr("m")))),
        (C, packet(0xE0, b"\x00" + reason)),
    ]
    events = split_invariant(new, chunks)
    assert kinds(events) == []
    pk = packets(events)
    assert all(p.protocol_version == 5 for p in pk)
    assert pk[3].message is not None and pk[3].message.properties == {"reason_string": "why"}


def test_midstream_pickup_infers_v5_from_properties() -> None:
    chunks = [(S, packet(0x40, b"\x00\x01\x10" + props(b"\x1f" + mstr("r"))))]
    events = feed_all(new(), chunks)
    assert kinds(events) == ["mqtt.missing_connect", "mqtt.unexpected_ack"]
    assert packets(events)[0].protocol_version == 5


def test_qos_steps_missing_and_duplicated() -> None:
    chunks = [
        (C, connect("q")),
        (C, publish("t", qos=2, packet_id=5)),
        (C, ack(codes.PUBREL, 5)),  # PUBREL before PUBREC
        (S, ack(codes.PUBCOMP, 5)),
        (S, ack(codes.PUBCOMP, 5)),  # duplicate: nothing in flight any more
        (C, publish("t", qos=1, packet_id=6)),
        (C, publish("t", qos=1, packet_id=6)),  # reuse without DUP
        (C, publish("t", qos=1, packet_id=6, dup=True)),  # retransmission: fine
    ]
    events = feed_all(new(), chunks)
    assert kinds(events) == [
        "mqtt.missing_pubrec", "mqtt.unexpected_ack", "mqtt.packet_id_reuse", "mqtt.incomplete_qos",
    ]  # fmt: skip


def test_gap_then_resync_on_next_plausible_packet() -> None:
    s = new()
    feed_all(s, [(C, connect("g"))])
    out = list(s.feed(publish("a/b", b"x" * 100)[:50], True, 1.0))
    out += s.gap(True, 20, 1.0)
    out += s.feed(b"\x00" * 30, True, 1.0)  # rest of the lost packet: not plausible, dropped
    out += s.feed(publish("c/d", b"y"), True, 1.0)
    assert [p.topic for p in packets(out)] == ["c/d"]


def test_truncated_large_message_is_counted_not_buffered() -> None:
    limits = Limits(mqtt_max_message=1000)
    s = new(limits)
    big = publish("t", b"z" * 5000)
    out = list(s.feed(big[:100], True, 1.0))
    assert kinds(out) == ["mqtt.missing_connect", "mqtt.truncated"]
    assert len(s._to_server.buf) == 0 and s._to_server.skip > 0
    for i in range(100, len(big), 700):
        out += s.feed(big[i : i + 700], True, 1.0)
    out += s.feed(publish("after", b"1"), True, 1.0)
    assert [p.topic for p in packets(out) if p.message] == ["after"]
    assert packets(out)[0].truncated


def test_stats_section() -> None:
    d = MqttDissector()
    stats = d.stats()
    chunks = [*V311_CONVERSATION, (C, connect("other", level=5)), (C, b"\x00\x00")]
    for e in feed_all(d.session(FLOW, Limits()), chunks):
        stats.observe(e)
    sec = stats.section()
    assert sec["packets_by_type"]["PUBLISH"] == 2 and sec["packets_by_type"]["CONNECT"] == 2
    assert sec["versions"] == {"3.1.1": 1, "5.0": 1}
    assert sec["topics"] == ["plant/a/telemetry"]
    assert sec["client_ids"] == ["other", "sensor-7"]
    assert sec["anomalies_by_kind"] == {"mqtt.double_connect": 1, "mqtt.unassigned_msg_type": 1}
    json.dumps(sec)


@pytest.mark.parametrize(
    ("data", "to_server", "expected"),
    [
        (connect("p"), True, "yes"),
        (connect("p", level=3), True, "yes"),
        (connect("p")[:5], True, "more"),
        (b"\x10\x10\x00\x04HTTP\x04", True, "no"),
        (publish("plant/line1/temp", b"1"), True, "yes"),
        (publish("plant/line1/temp", b"1" * 100)[:10], False, "yes"),
        (connack(0), False, "yes"),
        (b"\xc0\x00", True, "more"),
        (b"\xc0\x00\xc0\x00", True, "yes"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True, "no"),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", True, "no"),
        (b"\x30\x05\x00\x03\xff\xfe\xfd", True, "no"),  # topic not UTF-8
        (b"\x00\x00\x00\x06\x00\x00", True, "no"),  # Modbus MBAP
        (b"\x30\xff\xff\xff\xff\x7f", True, "no"),
    ],
)
def test_probe(data: bytes, to_server: bool, expected: str) -> None:
    assert MqttDissector().probe(data, to_server).value == expected


def test_probe_and_session_contract() -> None:
    d = MqttDissector()
    assert d.name == "mqtt" and d.ports == frozenset({1883})
    s = d.session(FLOW, Limits())
    assert list(s.gap(True, 0, 0.0)) == [] and list(s.close(0.0)) == []


def test_events_satisfy_app_event_protocol() -> None:
    from sensor.records import AppEvent as Proto

    events = feed_all(new(), [(C, connect("e")), (C, b"\x00\x00")])
    for e in events:
        assert isinstance(e, Proto)
        assert e.app_proto == "mqtt"
    assert {e.event_type for e in events} == {"mqtt", "anomaly"}
    assert any(isinstance(e, ProtocolAnomaly) for e in events)
    assert isinstance(packets(events)[0].message, Connect)


def test_bytewise_equals_whole_for_v5_conversation() -> None:
    chunks = [*v5_session_start(), (C, aliased("x/y", 1, b"p" * 200)), (C, aliased("", 1))]
    assert [p.topic for p in packets(feed_all(new(), bytewise(chunks)))][-1] == "x/y"
