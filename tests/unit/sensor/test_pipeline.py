"""The packet loop: detection by port and content, routing of events, monotonic packet time (P5)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from sensor.dissectors.base import Dissector, DissectorSession, Probe, ProtocolStats
from sensor.dissectors.modbus import ModbusDissector
from sensor.limits import Limits
from sensor.pipeline import Pipeline
from sensor.records import AppEvent, FlowRef, FlowSummary, Frame, ProtocolAnomaly

LINKTYPE_ETHERNET = 1


class Collect:
    def __init__(self) -> None:
        self.events: list[AppEvent] = []

    def handle(self, event: AppEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def frame(
    ts: float,
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    payload: bytes = b"",
    flags: str = "PA",
    ack: int = 0,
) -> Frame:
    pkt = Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags)
    data = bytes(pkt / Raw(payload)) if payload else bytes(pkt)
    return Frame(ts, LINKTYPE_ETHERNET, data, len(data))


def conversation(client_port: int, server_port: int, exchanges: Sequence[tuple[bytes, bytes]],
                 t0: float = 100.0) -> list[Frame]:  # fmt: skip
    """A handshake, then request/response pairs, each in one segment."""
    c, s = "10.9.0.1", "10.9.0.2"
    cseq, sseq = 1000, 9000
    out = [
        frame(t0, c, s, client_port, server_port, cseq, flags="S"),
        frame(t0 + 0.001, s, c, server_port, client_port, sseq, flags="SA", ack=cseq + 1),
        frame(t0 + 0.002, c, s, client_port, server_port, cseq + 1, flags="A", ack=sseq + 1),
    ]
    cseq += 1
    sseq += 1
    t = t0 + 0.01
    for request, response in exchanges:
        out.append(frame(t, c, s, client_port, server_port, cseq, request, ack=sseq))
        cseq += len(request)
        out.append(frame(t + 0.001, s, c, server_port, client_port, sseq, response, ack=cseq))
        sseq += len(response)
        t += 0.01
    return out


def modbus_read(tid: int) -> tuple[bytes, bytes]:
    request = struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, 0, 1)
    response = struct.pack(">HHHBBBH", tid, 0, 5, 1, 3, 2, 42)
    return request, response


def run(frames: Sequence[Frame], dissectors: Sequence[Dissector] | None = None) -> tuple[Pipeline, Collect]:
    sink = Collect()
    pipeline = Pipeline(list(dissectors) if dissectors is not None else [ModbusDissector()], [sink], Limits())
    for f in frames:
        pipeline.process(f)
    pipeline.finish()
    return pipeline, sink


def transactions(sink: Collect) -> list[Any]:
    return [e for e in sink.events if e.event_type == "modbus"]


def test_modbus_on_its_port_is_claimed_and_flow_record_names_it() -> None:
    pipeline, sink = run(conversation(40001, 502, [modbus_read(1), modbus_read(2)]))
    assert len(transactions(sink)) == 2
    (summary,) = sink.of(FlowSummary)
    assert summary.app_proto == "modbus"
    assert pipeline.counters["detect.modbus"] == 1


def test_modbus_on_a_high_port_is_found_by_content() -> None:
    _, sink = run(conversation(40002, 15020, [modbus_read(1)]))
    assert [t.flow.server_port for t in transactions(sink)] == [15020]


def test_http_on_502_is_not_taken_for_modbus() -> None:
    http = (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    pipeline, sink = run(conversation(40003, 502, [http]))
    assert transactions(sink) == []
    assert not [e for e in sink.of(ProtocolAnomaly) if e.app_proto == "modbus"]
    assert pipeline.counters["detect.unknown_flows"] == 1
    (summary,) = sink.of(FlowSummary)
    assert summary.app_proto == ""


class _Counting(Dissector):
    """A dissector that says MORE until it has seen ``need`` bytes, then YES."""

    name = "probe-test"
    ports = frozenset({7777})

    def __init__(self, need: int) -> None:
        self.need = need
        self.fed: list[bytes] = []

    def probe(self, data: bytes, to_server: bool) -> Probe:
        return Probe.YES if len(data) >= self.need else Probe.MORE

    def session(self, flow: FlowRef, limits: Limits) -> DissectorSession:
        outer = self

        class S(DissectorSession):
            def feed(self, data: bytes, to_server: bool, ts: float) -> Sequence[AppEvent]:
                outer.fed.append(data)
                return ()

            def gap(self, to_server: bool, size: int, ts: float) -> Sequence[AppEvent]:
                return ()

            def close(self, ts: float) -> Sequence[AppEvent]:
                return ()

        return S()

    def stats(self) -> ProtocolStats:
        raise AssertionError("not used")


def test_bytes_buffered_while_probing_reach_the_session_in_order() -> None:
    d = _Counting(need=10)
    run(conversation(40004, 7777, [(b"abcd", b"wxyz"), (b"efgh", b"0123"), (b"ijkl", b"4567")]), [d])
    # claimed after 12 client bytes: everything before is replayed, then fed directly
    assert b"".join(d.fed) == b"abcdwxyzefgh0123ijkl4567"


def test_probe_window_exhausted_leaves_flow_unknown() -> None:
    d = _Counting(need=10**9)
    pipeline = Pipeline([d], [Collect()], Limits(probe_bytes=8))
    for f in conversation(40005, 7777, [(b"a" * 6, b"b" * 6), (b"c" * 6, b"d" * 6)]):
        pipeline.process(f)
    assert pipeline.counters["detect.unknown_flows"] == 1
    assert d.fed == []


def test_P5_time_going_backwards_is_clamped_and_counted() -> None:
    frames = conversation(40006, 502, [modbus_read(1), modbus_read(2)], t0=2_000_000_000.0)
    # the second exchange claims to be 1000 s in the past; then a year-2106 and a zero timestamp
    frames = [*frames[:5], *(f._replace(ts=f.ts - 1000) for f in frames[5:])]
    frames.append(frame(0.0, "10.9.0.3", "10.9.0.4", 1, 2, 0, flags="S"))
    frames.append(frame(4_294_967_295.0, "10.9.0.5", "10.9.0.6", 1, 2, 0, flags="S"))
    pipeline, sink = run(frames)
    assert pipeline.counters["capture.time_backwards"] == 3
    assert len(transactions(sink)) == 2
    times = [e.ts for e in transactions(sink)]
    assert times == sorted(times)


def test_events_reach_protocol_sinks_only_for_their_protocol() -> None:
    modbus_only = Collect()
    everything = Collect()
    pipeline = Pipeline([ModbusDissector()], [everything], Limits())
    pipeline.add_sink(modbus_only, ("modbus",))
    frames = conversation(40007, 502, [modbus_read(1)])
    frames.append(frame(200.0, "10.9.0.7", "10.9.0.8", 5, 6, 0, b"\x00" * 4, flags="FA"))
    for f in frames:
        pipeline.process(f)
    pipeline.finish()
    assert modbus_only.events and all(e.app_proto == "modbus" for e in modbus_only.events)
    assert len(everything.events) > len(modbus_only.events)
