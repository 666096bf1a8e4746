"""The packet loop: frames in, events out (DESIGN.md §1).

One synchronous loop per sensor: decode → flow table and TCP reassembly → protocol detection →
dissector sessions → sinks. It does no I/O of its own (sources and sinks do) and reads no clock:
time is packet time, made monotonic here so that timeouts never run backwards (hostile input P5).

Protocol detection (DESIGN.md §3, ANCHORS.md §2 4.0): a new flow is offered to the dissectors whose
usual ports match its server port first, then to every other, by content. Each candidate's probe
answers YES, NO or MORE for the bytes buffered so far in one direction; the first YES claims the flow
and its session receives everything buffered, in arrival order. A flow on which every candidate
says NO, or that gives no verdict within ``Limits.probe_bytes`` per direction, is left to flow
accounting only, so an HTTP server on port 502 never becomes a Modbus device (M11).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from sensor.decode import Decoder
from sensor.dissectors.base import Dissector, DissectorSession, Probe, ProtocolStats
from sensor.flows.table import DEFAULT_SERVER_PORTS, FlowTable
from sensor.limits import Limits
from sensor.records import (
    Alert,
    AppEvent,
    FlowRef,
    FlowSummary,
    Frame,
    ProtocolAnomaly,
    StreamClosed,
    StreamData,
    StreamGap,
)

log = logging.getLogger(__name__)

# How often (in packet time) idle flows and fragment trains are expired.
EXPIRE_INTERVAL = 1.0


class EventSink(Protocol):
    """Anything that consumes the pipeline's events: outputs, statistics, observers."""

    def handle(self, event: AppEvent) -> None: ...


class Observer(EventSink, Protocol):
    """A sink that judges events (policy, baseline, rules, certificates) and raises alerts.

    Observers receive a ``publish`` callable when they are built (runtime.py) and call it with each
    :class:`~sensor.records.Alert`. ``flush`` is called at the end of input (and periodically by a
    live sensor) so that aggregated alerts are published with their final counts.
    """

    def flush(self, now: float) -> None: ...


class AlertRouter:
    """Hands every alert to the alert sinks in order: the store first (durable), then the outputs."""

    def __init__(self) -> None:
        self.sinks: list[EventSink] = []
        self.by_rule: Counter[str] = Counter()
        self.by_category: Counter[str] = Counter()

    def publish(self, alert: Alert) -> None:
        self.by_rule[alert.rule] += alert.count
        self.by_category[alert.category] += alert.count
        for sink in self.sinks:
            sink.handle(alert)

    def section(self) -> dict[str, Any]:
        return {
            "total": sum(self.by_category.values()),
            "by_category": dict(sorted(self.by_category.items())),
            "by_rule": dict(sorted(self.by_rule.items())),
        }


class _Detection:
    """Per-flow state while no dissector has claimed the flow yet."""

    __slots__ = ("buffered", "candidates", "chunks", "flow")

    def __init__(self, flow: FlowRef, candidates: list[Dissector]) -> None:
        self.flow = flow
        self.candidates = candidates
        # bytes buffered per direction for the probes, and the arrival order for replay
        self.buffered: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
        self.chunks: list[tuple[bool, bytes, float]] = []


class _Claimed:
    """Per-flow state once a dissector owns the flow."""

    __slots__ = ("app_proto", "session")

    def __init__(self, app_proto: str, session: DissectorSession) -> None:
        self.app_proto = app_proto
        self.session = session


_UNKNOWN = "unknown"


class Pipeline:
    """Runs frames through decode, flows, detection and dissectors, handing events to sinks."""

    def __init__(
        self,
        dissectors: Sequence[Dissector],
        sinks: Sequence[EventSink],
        limits: Limits,
    ) -> None:
        self.limits = limits
        self.dissectors = list(dissectors)
        ports = frozenset(p for d in self.dissectors for p in d.ports)
        self.decoder = Decoder(limits)
        self.flows = FlowTable(limits, server_ports=DEFAULT_SERVER_PORTS | ports)
        self.sinks = list(sinks)  # sinks of every event
        self._proto_sinks: dict[str, list[EventSink]] = {}  # sinks of one app_proto's events only
        self._routes: dict[str, list[EventSink]] = {}  # app_proto -> sinks, built on first use
        self.counters: Counter[str] = Counter()
        self.packets = 0
        self.bytes = 0
        self.now = 0.0
        self._next_expire = 0.0
        self._flow_state: dict[int, _Detection | _Claimed | str] = {}
        self._app_proto_of_flow: dict[int, str] = {}
        self._by_port: dict[int, list[Dissector]] = {}
        for d in self.dissectors:
            for p in d.ports:
                self._by_port.setdefault(p, []).append(d)

    # --- the loop ------------------------------------------------------------------------------

    def process(self, frame: Frame) -> None:
        """Take one frame through the whole pipeline."""
        self.packets += 1
        self.bytes += frame.wire_len
        ts = frame.ts
        if ts < self.now:
            # Packet time must not run backwards for timeouts; keep the latest time seen.
            self.counters["capture.time_backwards"] += 1
            frame = frame._replace(ts=self.now)
            ts = self.now
        else:
            self.now = ts
        if ts >= self._next_expire:
            if self._next_expire:
                self.decoder.expire(ts)
                self._dispatch(self.flows.expire(ts))
            self._next_expire = ts + EXPIRE_INTERVAL
        pkt = self.decoder.decode(frame)
        if pkt is None:
            return
        self._dispatch(self.flows.track(pkt))

    def finish(self) -> None:
        """End of input: close every flow so pending transactions and flow records come out."""
        self._dispatch(self.flows.flush(self.now))

    def run(self, frames: Iterable[Frame]) -> None:
        process = self.process
        for frame in frames:
            process(frame)

    # --- dispatch ------------------------------------------------------------------------------

    def add_sink(self, sink: EventSink, app_protos: Iterable[str] | None = None) -> None:
        """Add a sink of every event, or only of the events of the given app protocols."""
        if app_protos is None:
            self.sinks.append(sink)
        else:
            for proto in app_protos:
                self._proto_sinks.setdefault(proto, []).append(sink)
        self._routes.clear()

    def _emit(self, events: Iterable[AppEvent]) -> None:
        routes = self._routes
        for event in events:
            route = routes.get(event.app_proto)
            if route is None:
                route = routes[event.app_proto] = self.sinks + self._proto_sinks.get(event.app_proto, [])
            for sink in route:
                sink.handle(event)

    def _dispatch(self, outputs: Sequence[Any]) -> None:
        for out in outputs:
            kind = type(out)
            if kind is StreamData:
                self._on_data(out)
            elif kind is StreamGap:
                self._on_gap(out)
            elif kind is StreamClosed:
                self._on_closed(out)
            elif kind is FlowSummary:
                app = self._app_proto_of_flow.pop(out.flow.flow_id, "")
                self._emit((dataclasses.replace(out, app_proto=app) if app else out,))
            else:
                self._emit((out,))

    def _on_data(self, sd: StreamData) -> None:
        state = self._flow_state.get(sd.flow.flow_id)
        if type(state) is _Claimed:
            events = state.session.feed(sd.data, sd.to_server, sd.ts)
            if events:  # most segments complete nothing (a request waits for its response)
                self._emit(events)
            return
        if state is None:
            state = _Detection(sd.flow, self._candidates(sd.flow))
            self._flow_state[sd.flow.flow_id] = state
        if isinstance(state, _Detection):
            self._detect(state, sd)

    def _candidates(self, flow: FlowRef) -> list[Dissector]:
        first = self._by_port.get(flow.server_port, [])
        return first + [d for d in self.dissectors if d not in first]

    def _detect(self, det: _Detection, sd: StreamData) -> None:
        buf = det.buffered[sd.to_server]
        room = self.limits.probe_bytes - len(buf)
        if room > 0:
            buf += sd.data[:room]
        det.chunks.append((sd.to_server, sd.data, sd.ts))
        data = bytes(buf)
        undecided: list[Dissector] = []
        for d in det.candidates:
            verdict = d.probe(data, sd.to_server)
            if verdict is Probe.YES:
                self._claim(det, d)
                return
            if verdict is Probe.MORE:
                undecided.append(d)
        det.candidates = undecided
        if not undecided or room <= len(sd.data):
            # Nobody recognises the flow (or the probe window is exhausted): flow accounting only.
            self._flow_state[det.flow.flow_id] = _UNKNOWN
            self.counters["detect.unknown_flows"] += 1

    def _claim(self, det: _Detection, dissector: Dissector) -> None:
        flow_id = det.flow.flow_id
        session = dissector.session(det.flow, self.limits)
        self._flow_state[flow_id] = _Claimed(dissector.name, session)
        self._app_proto_of_flow[flow_id] = dissector.name
        self.counters[f"detect.{dissector.name}"] += 1
        for to_server, data, ts in det.chunks:
            self._emit(session.feed(data, to_server, ts))

    def _on_gap(self, gap: StreamGap) -> None:
        state = self._flow_state.get(gap.flow.flow_id)
        if type(state) is _Claimed:
            self._emit(state.session.gap(gap.to_server, gap.size, gap.ts))
        elif isinstance(state, _Detection):
            # What was buffered no longer joins up with what follows; start probing afresh.
            state.buffered[gap.to_server].clear()
            state.chunks = [c for c in state.chunks if c[0] != gap.to_server]

    def _on_closed(self, closed: StreamClosed) -> None:
        state = self._flow_state.pop(closed.flow.flow_id, None)
        if type(state) is _Claimed:
            self._emit(state.session.close(closed.ts))


class CoreStats:
    """The top of the replay summary: packets, bytes, flows, decode errors and loss counters."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.anomalies: Counter[str] = Counter()

    def handle(self, event: AppEvent) -> None:
        if type(event) is ProtocolAnomaly and not event.app_proto:
            self.anomalies[event.kind] += 1

    def section(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "packets": p.packets,
            "bytes": p.bytes,
            "flows": p.flows.total_flows,
            "decode_errors": p.decoder.invalid,
            "decoder": dict(sorted(p.decoder.counters.items())),
            "flow_table": dict(sorted(p.flows.counters.items())),
            "pipeline": dict(sorted(p.counters.items())),
            "stream_anomalies_by_kind": dict(sorted(self.anomalies.items())),
        }


class StatsSink:
    """Adapts a dissector's :class:`ProtocolStats` to the sink interface."""

    def __init__(self, name: str, stats: ProtocolStats) -> None:
        self.name = name
        self.stats = stats
        self.handle: Callable[[AppEvent], None] = stats.observe
