"""TCP reassembly through the FlowTable: fast path, overlaps (T5), wraparound (T6), holes (T7),
mid-stream pickup (T8), RST checks (T9) and arbitrary segmentation (T11)."""

from __future__ import annotations

import itertools
import random
import socket
import struct

import pytest

from sensor.flows.table import FlowTable
from sensor.flows.tcp import seq_diff, tcp_option, window_scale
from sensor.limits import Limits
from sensor.records import (
    PROTO_TCP,
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    FlowSummary,
    Packet,
    ProtocolAnomaly,
    StreamData,
    StreamGap,
)

CLIENT = socket.inet_aton("192.168.1.10")
SERVER = socket.inet_aton("192.168.1.20")
MD5_OPTION = bytes((19, 18)) + b"\x11" * 16 + b"\x01\x01"


def segment(
    ts: float,
    to_server: bool,
    seq: int,
    payload: bytes = b"",
    flags: int = TCP_ACK | TCP_PSH,
    options: bytes = b"",
    cport: int = 40000,
    client: bytes = CLIENT,
    ack: int = 0,
) -> Packet:
    src, dst, sport, dport = (client, SERVER, cport, 502) if to_server else (SERVER, client, 502, cport)
    wire_len = 54 + len(payload)
    return Packet(
        ts,
        4,
        src,
        dst,
        PROTO_TCP,
        sport,
        dport,
        payload,
        wire_len,
        seq & 0xFFFFFFFF,
        ack,
        flags,
        65535,
        options,
    )


def open_flow(
    table: FlowTable, client_isn: int, server_isn: int = 5000, cport: int = 40000, client: bytes = CLIENT
) -> None:
    table.track(segment(0.0, True, client_isn, flags=TCP_SYN, cport=cport, client=client))
    table.track(segment(0.0, False, server_isn, flags=TCP_SYN | TCP_ACK, cport=cport, client=client))
    table.track(segment(0.0, True, client_isn + 1, flags=TCP_ACK, cport=cport, client=client))


def to_server_bytes(outputs: list[object]) -> bytes:
    return b"".join(o.data for o in outputs if isinstance(o, StreamData) and o.to_server)


def run(table: FlowTable, packets: list[Packet]) -> list[object]:
    out: list[object] = []
    for packet in packets:
        out += table.track(packet)
    return out


def test_seq_diff_is_modular() -> None:
    assert seq_diff(5, 0xFFFFFFF0) == 21
    assert seq_diff(0xFFFFFFF0, 5) == -21
    assert seq_diff(100, 100) == 0


def test_option_helpers() -> None:
    assert window_scale(bytes((1, 3, 3, 7))) == 7
    assert window_scale(bytes((3, 3, 40))) == 14
    assert window_scale(b"") == 0
    assert tcp_option(MD5_OPTION, 19) == b"\x11" * 16
    assert tcp_option(bytes((2, 40)), 19) is None  # length past the end: walk stops


def test_fast_path_hands_the_payload_object_on_untouched() -> None:
    table = FlowTable()
    open_flow(table, 1000)
    payload = bytes(range(50))
    out = table.track(segment(1.0, True, 1001, payload))
    assert len(out) == 1 and isinstance(out[0], StreamData)
    assert out[0].data is payload
    assert table.reassembly_bytes == 0


def test_out_of_order_queued_then_drained() -> None:
    table = FlowTable()
    open_flow(table, 1000)
    assert table.track(segment(1.0, True, 1011, b"B" * 10)) == []
    assert table.reassembly_bytes == 10
    out = table.track(segment(1.1, True, 1001, b"A" * 10))
    assert to_server_bytes(out) == b"A" * 10 + b"B" * 10
    assert table.reassembly_bytes == 0


def test_identical_retransmission_counted_not_reported() -> None:
    table = FlowTable()
    open_flow(table, 1000)
    out = run(table, [segment(1.0, True, 1001, b"hello"), segment(1.1, True, 1001, b"hello")])
    assert to_server_bytes(out) == b"hello"
    assert table.counters["tcp.retransmission"] == 1
    assert not any(isinstance(o, ProtocolAnomaly) for o in out)


def test_T5_overlap_with_queued_bytes_first_wins() -> None:
    table = FlowTable()
    open_flow(table, 1000)
    out = run(
        table,
        [
            segment(1.0, True, 1011, b"FIRST-----"),
            segment(1.1, True, 1006, b"zzzzzSECONDzzzzz"),  # covers 1006..1022, differs on 1011..1021
            segment(1.2, True, 1001, b"01234"),
        ],
    )
    assert to_server_bytes(out) == b"01234zzzzzFIRST-----z"
    anomalies = [o for o in out if isinstance(o, ProtocolAnomaly)]
    assert [a.kind for a in anomalies] == ["tcp.overlap_diff"]
    assert anomalies[0].to_server and anomalies[0].app_proto == ""
    assert table.counters["tcp.overlap_diff"] == 1


def test_T5_retransmission_with_different_bytes_is_reported() -> None:
    table = FlowTable()
    open_flow(table, 1000)
    out = run(table, [segment(1.0, True, 1001, b"write 1"), segment(1.1, True, 1001, b"write 9")])
    assert to_server_bytes(out) == b"write 1"
    assert [o.kind for o in out if isinstance(o, ProtocolAnomaly)] == ["tcp.overlap_diff"]


def test_T5_partial_overlap_with_delivered_data_keeps_first_bytes() -> None:
    table = FlowTable()
    open_flow(table, 1000)
    out = run(table, [segment(1.0, True, 1001, b"abcdef"), segment(1.1, True, 1004, b"XYZghi")])
    assert to_server_bytes(out) == b"abcdefghi"
    assert [o.kind for o in out if isinstance(o, ProtocolAnomaly)] == ["tcp.overlap_diff"]


def chunked(data: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(offset, data[offset : offset + size]) for offset in range(0, len(data), size)]


@pytest.mark.parametrize("isn", [0xFFFFFFFF - 5000, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF])
def test_T6_wraparound_same_output_as_unwrapped(isn: int) -> None:
    stream = bytes(random.Random(isn).getrandbits(8) for _ in range(20_000))
    pieces = chunked(stream, 1000)
    order = list(range(len(pieces)))
    random.Random(1).shuffle(order)

    def reassemble(client_isn: int) -> bytes:
        table = FlowTable()
        open_flow(table, client_isn)
        out = run(table, [segment(1.0, True, client_isn + 1 + pieces[i][0], pieces[i][1]) for i in order])
        out += table.flush(2.0)
        assert not any(isinstance(o, StreamGap | ProtocolAnomaly) for o in out)
        return to_server_bytes(out)

    assert reassemble(isn) == reassemble(1000) == stream


def test_T6_wraparound_on_midstream_pickup() -> None:
    table = FlowTable()
    start = 0xFFFFFF00
    out = run(table, [segment(1.0, True, start + off, data) for off, data in chunked(b"q" * 1024, 100)])
    assert to_server_bytes(out) == b"q" * 1024


def test_T7_holes_with_1mib_behind_bounded_and_resumed() -> None:
    limits = Limits(
        max_stream_buffer=128 * 1024, gap_wait_bytes=64 * 1024, max_reassembly_bytes=4 * 1024 * 1024
    )
    table = FlowTable(limits)
    body = b"M" * 1460
    flows = 200
    after_hole = 1024 * 1024
    delivered_after = [0] * flows
    gaps = [0] * flows
    peak_used = 0
    for index in range(flows):
        client = bytes((10, 9, index // 256, index % 256))
        open_flow(table, 7000, cport=30000 + index, client=client)
        table.track(segment(0.5, True, 7001, b"head", cport=30000 + index, client=client))
        seq = 7001 + 4 + 1460  # one segment lost after the head
        while seq < 7005 + 1460 + after_hole:
            out = table.track(segment(1.0, True, seq, body, cport=30000 + index, client=client))
            seq += len(body)
            for o in out:
                if isinstance(o, StreamData):
                    delivered_after[index] += len(o.data)
                elif isinstance(o, StreamGap):
                    gaps[index] += 1
                    assert o.size == 1460
            peak_used = max(peak_used, table.reassembly_bytes)
        for flow in table._flows.values():  # white-box: the per-direction cap
            for stream in (flow.client_stream, flow.server_stream):
                assert stream is not None and stream.queued <= limits.max_stream_buffer
    assert peak_used <= limits.max_reassembly_bytes
    assert gaps == [1] * flows
    # everything after the hole arrives, apart from the lost segment itself
    assert all(count == (after_hole // 1460 + 1) * 1460 for count in delivered_after)
    assert table.counters["tcp.reassembly_gap"] == flows


def test_T7_global_memcap_forces_gaps_across_flows() -> None:
    limits = Limits(max_stream_buffer=1 << 20, gap_wait_bytes=1 << 20, max_reassembly_bytes=50_000)
    table = FlowTable(limits)
    peak = 0
    for index in range(20):
        open_flow(table, 100, cport=20000 + index)
        for k in range(10):
            table.track(segment(1.0, True, 101 + 1000 + k * 1000, b"x" * 1000, cport=20000 + index))
            peak = max(peak, table.reassembly_bytes)
    assert peak <= limits.max_reassembly_bytes
    assert table.counters["tcp.memcap"] > 0


def test_T7_segment_count_cap() -> None:
    table = FlowTable(Limits(max_segments_per_direction=16))
    open_flow(table, 100)
    out = run(table, [segment(1.0, True, 101 + 2 + 2 * k, b"s") for k in range(100)])
    assert table.counters["tcp.segment_limit"] > 0
    assert all(len(f.client_stream.starts) <= 16 for f in table._flows.values() if f.client_stream)
    assert any(isinstance(o, StreamGap) for o in out)


def test_T7_hole_declared_at_close() -> None:
    table = FlowTable(Limits(tcp_closed_timeout=0.0))
    open_flow(table, 100)
    out = run(
        table,
        [
            segment(1.0, True, 101, b"aaaa"),
            segment(1.0, True, 109, b"cccc", flags=TCP_ACK | TCP_FIN),
            segment(1.0, False, 5001, b"", flags=TCP_ACK | TCP_FIN),
        ],
    )
    out += table.expire(1.0)
    kinds = [(type(o).__name__, getattr(o, "size", None)) for o in out if not isinstance(o, FlowSummary)]
    assert kinds == [
        ("StreamData", None),
        ("ProtocolAnomaly", None),
        ("StreamGap", 4),
        ("StreamData", None),
        ("StreamClosed", None),
    ]
    gap_anomaly = out[1]
    assert isinstance(gap_anomaly, ProtocolAnomaly) and gap_anomaly.kind == "tcp.reassembly_gap"
    summary = out[-1]
    assert isinstance(summary, FlowSummary) and summary.gaps == 1 and summary.reason == "fin"


def test_peer_acknowledging_unseen_bytes_declares_the_gap_at_once() -> None:
    """A request lost by the capture: the server's answer acknowledges it, so the gap comes before
    the answer instead of after (when the next requests would already follow their answers)."""
    table = FlowTable()
    open_flow(table, 100)
    out = run(
        table,
        [
            segment(1.0, True, 101, b"req1"),
            segment(1.1, False, 5001, b"rsp1", ack=105),
            # req2 (4 bytes at 105) is never seen; rsp2 acknowledges it
            segment(1.3, False, 5005, b"rsp2", ack=109),
            segment(1.4, True, 109, b"req3", ack=5009),
        ],
    )
    kinds = [(type(o).__name__, getattr(o, "to_server", None)) for o in out]
    assert kinds == [
        ("StreamData", True),
        ("StreamData", False),
        ("ProtocolAnomaly", True),
        ("StreamGap", True),
        ("StreamData", False),
        ("StreamData", True),
    ]
    gap = out[3]
    assert isinstance(gap, StreamGap) and gap.size == 4
    assert table.counters["tcp.acked_unseen"] == 1


def test_acknowledgement_jump_beyond_a_gigabyte_is_not_taken_as_loss() -> None:
    table = FlowTable()
    open_flow(table, 100)
    out = run(table, [segment(1.0, False, 5001, b"rsp1", ack=(105 + (1 << 30)) & 0xFFFFFFFF)])
    assert not any(isinstance(o, StreamGap) for o in out)


def test_T8_midstream_modbus_response_first() -> None:
    table = FlowTable()
    response = bytes.fromhex("00070000000501030200ff")
    request = bytes.fromhex("000800000006010300000001")
    out = run(
        table,
        [
            segment(5.0, False, 3_000_000, response, ack=77),  # its ACK tells where the client stands
            segment(5.1, True, 77, request, ack=3_000_011),
            segment(5.2, False, 3_000_011, response, ack=89),
        ],
    )
    data = [o for o in out if isinstance(o, StreamData)]
    assert [(d.to_server, d.data) for d in data] == [(False, response), (True, request), (False, response)]
    assert data[0].flow.server_port == 502


def test_T8_picked_up_keepalive_byte_is_not_data() -> None:
    table = FlowTable()
    out = run(
        table,
        [
            segment(1.0, True, 999, b"\x00"),  # keep-alive: seq = next - 1, one garbage byte
            Packet(1.0, 4, SERVER, CLIENT, PROTO_TCP, 502, 40000, b"", 54, 5000, 1000, TCP_ACK, 65535),
            segment(1.1, True, 1000, b"real data"),
            segment(31.0, True, 1008, b"\x00"),  # a later keep-alive
        ],
    )
    assert to_server_bytes(out) == b"real data"
    assert table.counters["tcp.keepalive"] == 2


def test_zero_window_probe_is_data_not_overlap() -> None:
    table = FlowTable()
    open_flow(table, 100)
    out = run(table, [segment(1.0, True, 101, b"P"), segment(2.0, True, 101, b"PAYLOAD")])
    assert to_server_bytes(out) == b"PAYLOAD"
    assert not any(isinstance(o, ProtocolAnomaly) for o in out)


def test_T9_rst_with_md5_option_is_suspicious_and_ignored() -> None:
    table = FlowTable()
    open_flow(table, 100)
    run(table, [segment(1.0, True, 101, b"before")])
    out = table.track(segment(1.1, False, 5001, flags=TCP_RST | TCP_ACK, options=MD5_OPTION))
    assert [o.kind for o in out if isinstance(o, ProtocolAnomaly)] == ["tcp.suspicious_rst"]
    out = table.track(segment(1.2, True, 107, b"after"))
    assert to_server_bytes(out) == b"after"
    assert len(table) == 1


def test_T9_rst_out_of_window_ignored_in_window_honoured() -> None:
    table = FlowTable(Limits(tcp_closed_timeout=0.0))
    open_flow(table, 100)
    out = table.track(segment(1.0, False, 5001 + 2**30, flags=TCP_RST))
    assert [o.kind for o in out if isinstance(o, ProtocolAnomaly)] == ["tcp.suspicious_rst"]
    assert table.track(segment(1.1, False, 5001, flags=TCP_RST)) == []
    out = table.expire(1.1)
    summary = out[-1]
    assert isinstance(summary, FlowSummary) and summary.reason == "rst" and summary.state == "closed"


def test_T9_rst_window_honours_window_scale() -> None:
    table = FlowTable()
    wscale = bytes((1, 3, 3, 8))
    table.track(segment(0.0, True, 100, flags=TCP_SYN, options=wscale))
    table.track(segment(0.0, False, 5000, flags=TCP_SYN | TCP_ACK, options=wscale))
    # the client advertises 65535 << 8: a RST 1 MB into the window is acceptable
    assert table.track(segment(1.0, False, 5001 + 1_000_000, flags=TCP_RST)) == []
    assert table.counters["tcp.rst"] == 1


def split_points(rng: random.Random, length: int, pieces: int) -> list[int]:
    return sorted({0, length, *rng.sample(range(1, length), min(pieces - 1, length - 1))})


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["one_byte", "k_random"])
def test_T11_any_segmentation_reassembles_identically(seed: int, mode: str) -> None:
    rng = random.Random(seed)
    stream = bytes.fromhex("000100000006010300000002") * 20 + bytes(rng.getrandbits(8) for _ in range(300))
    points = (
        list(range(len(stream) + 1))
        if mode == "one_byte"
        else split_points(rng, len(stream), rng.randint(2, 40))
    )
    pieces = [(a, stream[a:b]) for a, b in itertools.pairwise(points)]
    order = list(range(len(pieces)))
    if seed % 2:  # local reordering plus duplicates, as a SPAN port may show
        for i in range(0, len(order) - 3, 3):
            order[i], order[i + 2] = order[i + 2], order[i]
        order += rng.sample(order, len(order) // 5)
    isn = rng.getrandbits(32)
    table = FlowTable()
    open_flow(table, isn)
    out = run(table, [segment(1.0, True, isn + 1 + pieces[i][0], pieces[i][1]) for i in order])
    out += table.flush(2.0)
    assert to_server_bytes(out) == stream
    assert not any(isinstance(o, StreamGap | ProtocolAnomaly) for o in out)


def test_syn_and_fin_consume_a_sequence_number() -> None:
    table = FlowTable()
    open_flow(table, 0xFFFFFFFF)  # the SYN wraps: the first data byte is at 0
    out = table.track(segment(1.0, True, 0, b"abc", flags=TCP_ACK | TCP_PSH | TCP_FIN))
    assert to_server_bytes(out) == b"abc"
    flow = next(iter(table._flows.values()))
    assert flow.client_stream is not None and flow.client_stream.next_seq == 4
    assert table.track(segment(1.1, True, 0, b"abc", flags=TCP_ACK | TCP_FIN)) == []  # retransmitted FIN


def test_data_on_syn_follows_the_syn() -> None:
    table = FlowTable()
    out = table.track(segment(0.0, True, 500, b"fastopen", flags=TCP_SYN))
    out += table.track(segment(0.1, True, 509, b"+more"))
    assert to_server_bytes(out) == b"fastopen+more"


def test_struct_of_md5_option_is_well_formed() -> None:
    kind, length = struct.unpack_from("!BB", MD5_OPTION)
    assert (kind, length) == (19, 18)
