"""Property tests for the Modbus dissector: parsers raise only our ParseError family, sessions never
raise, state stays bounded, and chunking never changes the events of well-framed streams (T11).

(For garbage, where the session must hunt for a header, TCP segment starts are deliberately trusted
more than other offsets, so there the events may depend on the segmentation.)"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.dissectors.base import Reader
from sensor.dissectors.modbus import ModbusDissector, ModbusSession
from sensor.dissectors.modbus.frames import parse_exception, parse_mbap, parse_request, parse_response
from sensor.errors import ParseError
from sensor.limits import Limits
from sensor.records import FlowRef

FLOW = FlowRef(1, "1:fuzz", "tcp", "10.0.0.1", 40000, "10.0.0.2", 502)
LIMITS = Limits(max_pending_transactions=50)
FUNCTIONS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43, 65, 90, 127])


@st.composite
def adus(draw: st.DrawFn) -> bytes:
    fc = draw(FUNCTIONS)
    if draw(st.booleans()):
        fc |= 0x80
    body = draw(st.binary(max_size=40))
    length = draw(st.one_of(st.just(len(body) + 2), st.integers(0, 0xFFFF)))
    pid = draw(st.sampled_from([0, 0, 0, 1]))
    return struct.pack(">HHHBB", draw(st.integers(0, 3)), pid, length, draw(st.integers(0, 2)), fc) + body


streams = st.lists(st.tuples(st.booleans(), st.one_of(adus(), st.binary(max_size=30))), max_size=30)


@st.composite
def framed(draw: st.DrawFn) -> tuple[bool, bytes]:
    """A well-framed ADU (right MBAP length, protocol id 0) with an arbitrary body."""
    to_server = draw(st.booleans())
    fc = draw(FUNCTIONS)
    if not to_server and draw(st.booleans()):
        fc |= 0x80
    body = draw(st.binary(max_size=40))
    return to_server, struct.pack(
        ">HHHBB", draw(st.integers(0, 3)), 0, len(body) + 2, draw(st.integers(0, 2)), fc
    ) + body


framed_streams = st.lists(framed(), max_size=30)


@settings(max_examples=200, deadline=None)
@given(fc=st.integers(0, 255), body=st.binary(max_size=260))
def test_parsers_raise_only_parse_errors(fc: int, body: bytes) -> None:
    for call in (
        lambda: parse_request(Reader(body), fc),
        lambda: parse_response(Reader(body), fc, None),
        lambda: parse_exception(Reader(body), fc),
        lambda: parse_mbap(Reader(body)),
    ):
        try:
            call()
        except ParseError:
            pass


@settings(max_examples=200, deadline=None)
@given(chunks=streams)
def test_session_never_raises_and_stays_bounded(chunks: list[tuple[bool, bytes]]) -> None:
    s = ModbusSession(FLOW, LIMITS)
    for i, (to_server, data) in enumerate(chunks):
        for e in s.feed(data, to_server, float(i)):
            e.eve_body()
        assert s.buffered <= 2 * 260
        assert s.pending_count <= LIMITS.max_pending_transactions
        if i % 7 == 3:
            s.gap(to_server, 10, float(i))
    s.close(float(len(chunks)))


@settings(max_examples=200, deadline=None)
@given(chunks=framed_streams, cuts=st.lists(st.integers(1, 40), max_size=8))
def test_chunking_does_not_change_events(chunks: list[tuple[bool, bytes]], cuts: list[int]) -> None:
    def run(pieces: list[tuple[bool, bytes]]) -> list[object]:
        s = ModbusSession(FLOW, LIMITS)
        out: list[object] = []
        for to_server, data in pieces:
            out += [
                (type(e).__name__, getattr(e, "kind", ""), e.eve_body()) for e in s.feed(data, to_server, 0.0)
            ]
        out += [(type(e).__name__, getattr(e, "kind", ""), e.eve_body()) for e in s.close(0.0)]
        return out

    # Merge consecutive same-direction chunks so that only the cut points differ, then re-cut.
    merged: list[tuple[bool, bytes]] = []
    for d, data in chunks:
        if merged and merged[-1][0] == d:
            merged[-1] = (d, merged[-1][1] + data)
        elif data:
            merged.append((d, data))
    recut: list[tuple[bool, bytes]] = []
    for d, data in merged:
        pos = 0
        for c in cuts:
            if pos + c >= len(data):
                break
            recut.append((d, data[pos : pos + c]))
            pos += c
        recut.append((d, data[pos:]))
    assert run(recut) == run(merged)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64), to_server=st.booleans())
def test_probe_never_raises(data: bytes, to_server: bool) -> None:
    ModbusDissector().probe(data, to_server)
