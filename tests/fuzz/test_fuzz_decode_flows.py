"""Hypothesis: the decoder and the flow table never raise on any input, and stay bounded."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.decode import Decoder
from sensor.flows.table import FlowTable
from sensor.limits import Limits
from sensor.records import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, Frame, Packet, StreamData, StreamGap

LINKTYPES = st.sampled_from([0, 1, 101, 108, 113, 228, 229, 276, 147])

# a valid Ethernet/802.1Q/IPv4/TCP frame and an IPv6 fragment to mutate
_IPV4_TCP = bytes.fromhex(
    "02000000000b02000000000a81000064"  # MACs, 802.1Q VLAN 100
    "0800"
    "45000034000100004006000a0a0000010a000002"  # IPv4, 52 bytes, TCP
    "9c4001f6000003e8000000075018200000000000"  # TCP 40000 -> 502, PSH|ACK
    "000100000006010300000002"  # Modbus request
)
_IPV6_FRAGMENT = (
    bytes.fromhex("02000000000b02000000000a86dd")
    + struct.pack("!IHBB", 6 << 28, 8 + 16, 44, 64)
    + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    + struct.pack("!BBHI", 17, 0, 1, 0xABCD)  # fragment header: offset 0, M=1
    + struct.pack("!HHHH", 5000, 47808, 40, 0) + b"abcdefgh"
)  # fmt: skip
SMALL_LIMITS = Limits(
    max_fragment_trains=8,
    max_fragment_bytes=4096,
    max_flows=32,
    emergency_flows=24,
    max_stream_buffer=2048,
    max_reassembly_bytes=8192,
    max_segments_per_direction=16,
    gap_wait_bytes=1024,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(LINKTYPES, st.binary(max_size=200)), max_size=20))
def test_random_frames_never_raise(frames: list[tuple[int, bytes]]) -> None:
    decoder = Decoder(SMALL_LIMITS)
    table = FlowTable(SMALL_LIMITS)
    for index, (linktype, data) in enumerate(frames):
        packet = decoder.decode(Frame(float(index), linktype, data, len(data)))
        if packet is not None:
            table.track(packet)
    assert decoder.counters["decoder.internal_error"] == 0
    assert decoder.fragment_bytes <= SMALL_LIMITS.max_fragment_bytes


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([_IPV4_TCP, _IPV6_FRAGMENT]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 200),
)
def test_mutated_frames_never_raise(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for position, value in flips:
        data[position % len(data)] = value
    decoder = Decoder(SMALL_LIMITS)
    table = FlowTable(SMALL_LIMITS)
    for frame_bytes in (bytes(data), bytes(data[: cut % (len(data) + 1)])):
        packet = decoder.decode(Frame(1.0, 1, frame_bytes, len(frame_bytes)))
        if packet is not None:
            table.track(packet)
    assert decoder.counters["decoder.internal_error"] == 0


_segment = st.tuples(
    st.integers(0, 5),  # which endpoint pair
    st.booleans(),  # direction
    st.integers(0, 2**32 - 1) | st.integers(0, 4000),  # sequence number: anywhere, or near the start
    st.binary(max_size=300),
    st.integers(0, 0x3F),  # flags
    st.sampled_from([b"", bytes((19, 18)) + bytes(16), bytes((3, 3, 14)), bytes((2, 40))]),
    st.integers(0, 30),  # time step
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_segment, max_size=60))
def test_random_segments_never_raise_and_stay_bounded(
    segments: list[tuple[int, bool, int, bytes, int, bytes, int]],
) -> None:
    table = FlowTable(SMALL_LIMITS)
    ts = 0.0
    for pair, to_server, seq, payload, flags, options, step in segments:
        ts += step
        client = bytes((10, 0, 0, pair))
        server = bytes((10, 0, 1, pair % 2))
        src, dst, sport, dport = (client, server, 40000, 502) if to_server else (server, client, 502, 40000)
        proto = PROTO_UDP if pair == 5 else PROTO_TCP
        table.track(
            Packet(ts, 4, src, dst, proto, sport, dport, payload, 54, seq, seq ^ 0x5555, flags, 1000, options)
        )
        assert table.reassembly_bytes <= SMALL_LIMITS.max_reassembly_bytes
        assert len(table) <= SMALL_LIMITS.max_flows
        for flow in table._flows.values():
            for stream in (flow.client_stream, flow.server_stream):
                if stream is not None:
                    assert stream.queued <= SMALL_LIMITS.max_stream_buffer
                    assert len(stream.starts) <= SMALL_LIMITS.max_segments_per_direction
        table.expire(ts)
    table.flush(ts + 1)
    assert len(table) == 0
    assert table.reassembly_bytes == 0


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=1, max_size=2000),
    st.lists(st.integers(1, 1999), max_size=40),
    st.randoms(use_true_random=False),
    st.integers(0, 2**32 - 1),
)
def test_T11_any_split_any_order_same_bytes(stream: bytes, cuts: list[int], rng: object, isn: int) -> None:
    points = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    pieces = [(a, stream[a:b]) for a, b in itertools.pairwise(points)]
    order = list(range(len(pieces)))
    rng.shuffle(order)  # type: ignore[attr-defined]
    table = FlowTable()  # default limits: nothing here gets near a cap, so no gap may appear
    client, server = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    table.track(Packet(0.0, 4, client, server, PROTO_TCP, 40000, 502, b"", 54, isn, 0, TCP_SYN))
    out = []
    for index in order:
        offset, data = pieces[index]
        seq = (isn + 1 + offset) & 0xFFFFFFFF
        out += table.track(Packet(1.0, 4, client, server, PROTO_TCP, 40000, 502, data, 54, seq, 0, TCP_ACK))
    out += table.flush(2.0)
    assert not any(isinstance(o, StreamGap) for o in out)
    assert b"".join(o.data for o in out if isinstance(o, StreamData)) == stream
