"""Hypothesis fuzzing of the OPC UA chunker (session) and binary decoder: only our own parse errors may
escape a parser, and a session never raises, whatever the bytes and however they are split."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.dissectors.base import Reader
from sensor.dissectors.opcua import OpcUaDissector
from sensor.dissectors.opcua.encoding import Decoder
from sensor.dissectors.opcua.services import decode_service
from sensor.errors import ParseError
from sensor.limits import DEFAULT_LIMITS
from sensor.records import FlowRef

FLOW = FlowRef(1, "1:fuzz", "tcp", "10.0.0.1", 50000, "10.0.0.2", 4840)
TYPES = [b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO", b"XYZ"]


@st.composite
def chunk(draw: st.DrawFn) -> bytes:
    mtype = draw(st.sampled_from(TYPES))
    ctype = draw(st.sampled_from([b"F", b"C", b"A", b"?"]))
    body = draw(st.binary(max_size=200))
    if mtype in (b"MSG", b"CLO") and draw(st.booleans()):
        channel = draw(st.integers(0, 3))
        body = struct.pack("<IIII", channel, 1, draw(st.integers(0, 10)), draw(st.integers(0, 5))) + body
        if draw(st.booleans()):
            body = (
                body[:16] + b"\x01\x00" + struct.pack("<H", draw(st.sampled_from([631, 634, 397, 826, 829])))
            )
            body += draw(st.binary(max_size=120))
    size = 8 + len(body)
    if draw(st.integers(0, 9)) == 0:
        size = draw(st.integers(0, 2**32 - 1))
    return mtype + ctype + struct.pack("<I", size) + body


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), chunk()), max_size=12), st.integers(1, 64))
def test_session_never_raises_and_split_invariant(items: list[tuple[bool, bytes]], step: int) -> None:
    whole = OpcUaDissector().session(FLOW, DEFAULT_LIMITS)
    split = OpcUaDissector().session(FLOW, DEFAULT_LIMITS)
    a: list[object] = []
    b: list[object] = []
    for to_server, data in items:
        a += whole.feed(data, to_server, 1.0)
        for i in range(0, len(data), step):
            b += split.feed(data[i : i + step], to_server, 1.0)
    a += whole.close(2.0)
    b += split.close(2.0)
    assert a == b
    for d in whole.dirs.values():
        assert len(d.buf) <= DEFAULT_LIMITS.max_pdu_buffer + 8


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_decoder_raises_only_parse_errors(data: bytes) -> None:
    for method in ("variant", "data_value", "diagnostic_info", "expanded_nodeid", "extension_object"):
        d = Decoder(Reader(data), max_depth=100, max_array=10_000, max_chars=256)
        try:
            getattr(d, method)()
        except ParseError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([631, 634, 673, 676, 527, 530, 712, 715, 826, 829, 461, 464, 467, 431, 751, 488]),
    st.binary(max_size=400),
)
def test_service_decoder_raises_only_parse_errors(type_id: int, data: bytes) -> None:
    body = b"\x01\x00" + struct.pack("<H", type_id) + data
    try:
        decode_service(Decoder(Reader(body), max_depth=100, max_array=10_000, max_chars=256))
    except ParseError:
        pass
