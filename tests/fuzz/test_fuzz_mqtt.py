"""Property tests for the MQTT dissector: parsers raise only ParseError, sessions never raise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor.dissectors.base import Reader
from sensor.dissectors.mqtt import MqttDissector, MqttSession
from sensor.dissectors.mqtt.frames import check_flags, parse_body, parse_fixed_header
from sensor.dissectors.mqtt.properties import ParseContext
from sensor.errors import ParseError
from sensor.limits import Limits
from sensor.records import FlowRef

FLOW = FlowRef(1, "1:fuzz", "tcp", "10.0.0.1", 40000, "10.0.0.2", 1883)
LIMITS = Limits(mqtt_max_message=4096, mqtt_max_transactions=16)

# Packets with a valid-looking header and random body: reach deeper than pure random bytes.
header_then_body = st.builds(
    lambda first, body: bytes([first]) + bytes([min(len(body), 127)]) + body[:127],
    st.integers(0, 255),
    st.binary(max_size=140),
)
chunk = st.one_of(st.binary(max_size=200), header_then_body)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 15), st.integers(0, 15), st.binary(max_size=300), st.sampled_from([0, 3, 4, 5]))
def test_parse_body_raises_only_parse_errors(ptype: int, flags: int, body: bytes, version: int) -> None:
    ctx = ParseContext(version=version)
    try:
        check_flags(ptype, flags, version)
        parse_body(ptype, flags, Reader(body), ctx)
    except ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=8))
def test_fixed_header_raises_only_parse_errors(data: bytes) -> None:
    try:
        hdr = parse_fixed_header(data)
    except ParseError:
        return
    assert hdr.header_length <= 5 and hdr.remaining_length <= 268_435_455


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), chunk), max_size=20), st.booleans())
def test_session_never_raises_and_stays_bounded(chunks: list[tuple[bool, bytes]], with_connect: bool) -> None:
    s = MqttSession(FLOW, LIMITS)
    if with_connect:
        s.feed(b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03dev", True, 0.0)
    for to_server, data in chunks:
        for e in s.feed(data, to_server, 1.0):
            e.eve_body()
            # the session's safety net must never be what caught a problem
            assert getattr(e, "kind", "") != "mqtt.internal_error"
        if data and data[0] == 0xFF:
            s.gap(to_server, len(data), 1.0)
    for e in s.close(2.0):
        e.eve_body()
    assert len(s.pending) <= LIMITS.mqtt_max_transactions
    assert len(s._to_server.buf) <= LIMITS.mqtt_max_message + 5 + 200
    assert len(s._to_client.buf) <= LIMITS.mqtt_max_message + 5 + 200


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_probe_never_raises(data: bytes, to_server: bool) -> None:
    MqttDissector().probe(data, to_server)
