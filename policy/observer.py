"""PolicyObserver: judges every operation the dissectors report and raises aggregated policy alerts.

It is an :class:`sensor.pipeline.Observer`: the runtime gives it the alert publisher, the pipeline
hands it every event. Per event it does a type lookup, a zone lookup (a dict hit after the first
sight of a host) and the checks of the entries of one conduit.

Violations aggregate: the same rule between the same two hosts within ``aggregation_window``
seconds of packet time (300 s by default, from the policy file) is one alert whose ``count`` says
how often it happened, ``ts`` the first and ``last_ts`` the last time; a poller repeating a forbidden
read every second gives one alert per window, not 300. One aggregate can span several communications
(graph edges: protocol and server port) of the two hosts, e.g. Modbus and MQTT with no conduit; when it
does, its evidence lists them (``protocols``, ``edges``: first seen first, at most ``MAX_EDGES``) so
that every one of them is marked as violating (``Store.list_edges_with_policy``). The aggregate is
published when its window has passed (checked as packet time moves on), when the pending table is
full, or by ``flush()``.

The observer also keeps the compliance counters ``zonewarden policy check`` reports: per conduit,
the operations allowed and denied; traffic without a conduit; which allow entries were used.

A flow no native dissector claimed is judged when it ends, as the protocol ``flow_protocol`` names
(tshark, with ``--deep``). On a live sensor tshark reads the same packets behind the sensor, so a flow
can end before tshark's line naming it was read: with ``wait_for_names`` seconds (packet time) such a
flow waits that long for its name before it is judged as "unknown" (``judge_waiting_flows`` at the end).

The policy can be replaced while running (:meth:`replace_policy`, used by the file watcher in
``policy/reload.py``): the swap is one attribute assignment, so the packet loop always sees either
the old or the new policy, never a mix.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.evaluate import (
    Verdict,
    evaluate_flow,
    evaluate_modbus,
    evaluate_mqtt,
    evaluate_opcua_channel,
    evaluate_opcua_message,
)
from policy.index import AssetTags, CompiledPolicy
from policy.load import load_policy
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage
from sensor.records import Alert, AppEvent, FlowRef, FlowSummary, stable_signature_id

log = logging.getLogger(__name__)

MAX_PENDING_ALERTS = 10_000  # aggregates held at once; the oldest is published when full
MAX_JUDGED_FLOWS = 250_000  # flows whose operations were judged, waiting for their FlowSummary
MAX_LABELS_PER_CONDUIT = 512  # distinct operation labels counted per conduit (a port scan makes many)
MAX_EXAMPLES = 5  # distinct operations kept in an alert's evidence
MAX_EDGES = 16  # distinct (protocol, server port) kept in an alert's evidence (a port scan makes many)
MAX_WAITING_FLOWS = 50_000  # ended flows waiting for tshark's name; the oldest is judged when full

FlowProtocol = Callable[[FlowRef], str | None]
"""Optional name of a flow's protocol from another source (tshark identification), or None."""


@dataclass(slots=True)
class _Aggregate:
    verdict: Verdict
    flow: FlowRef
    first_ts: float
    last_ts: float
    app_proto: str
    count: int = 1
    examples: list[str] = field(default_factory=list)
    edges: list[tuple[str, int]] = field(default_factory=list)  # (protocol, server port), first seen first
    edges_truncated: bool = False  # more than MAX_EDGES were seen


@dataclass(slots=True)
class ConduitStats:
    allowed: Counter[str] = field(default_factory=Counter)
    denied: Counter[str] = field(default_factory=Counter)

    def add(self, counter: Counter[str], label: str) -> None:
        if label in counter or len(counter) < MAX_LABELS_PER_CONDUIT:
            counter[label] += 1
        else:
            counter["(other)"] += 1


class PolicyObserver:
    """See module docstring."""

    def __init__(
        self,
        policy: CompiledPolicy,
        publish: Callable[[Alert], None],
        flow_protocol: FlowProtocol | None = None,
        source: str = "",
        wait_for_names: float = 0.0,
    ) -> None:
        self._policy = policy
        self.publish = publish
        self.flow_protocol = flow_protocol
        self.wait_for_names = wait_for_names
        # ended flows nobody named yet: (deadline in packet time, summary), in deadline order
        self._waiting: deque[tuple[float, FlowSummary]] = deque()
        self.source = source
        self._pending: dict[tuple[str, str, str], _Aggregate] = {}
        self._judged: set[int] = set()
        self._oldest_start = float("inf")
        self.stats: dict[str, ConduitStats] = {}
        self.no_conduit: Counter[tuple[str, str]] = Counter()
        self.intra_zone: Counter[str] = Counter()
        self.default_allowed: Counter[tuple[str, str]] = Counter()
        self.rules_used: set[tuple[str, int]] = set()
        self.operations = 0
        self.violations = 0
        self.alerts_published = 0
        self.reloads = 0
        self._dispatch: dict[type, Callable[[CompiledPolicy, Any], list[Verdict]]] = {
            ModbusTransaction: evaluate_modbus,
            OpcUaMessage: evaluate_opcua_message,
            OpcUaChannelEvent: evaluate_opcua_channel,
            MqttPacket: evaluate_mqtt,
        }

    @classmethod
    def from_file(
        cls, path: Path, publish: Callable[[Alert], None], asset_tags: AssetTags | None = None
    ) -> PolicyObserver:
        """Load (raises PolicyError with file:line) and build the observer."""
        return cls(CompiledPolicy(load_policy(path), asset_tags), publish, source=str(path))

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy

    def replace_policy(self, policy: CompiledPolicy) -> None:
        """Swap in a new policy; pending aggregates keep their counts and are published as usual."""
        self._policy = policy
        self.reloads += 1

    # --- the sink ------------------------------------------------------------------------------

    def handle(self, event: AppEvent) -> None:
        if self._waiting and event.ts >= self._waiting[0][0]:
            self.judge_waiting_flows(event.ts)
        kind = type(event)
        judge = self._dispatch.get(kind)
        if judge is not None:
            verdicts = judge(self._policy, event)
            if verdicts:
                flow = event.flow
                if flow is not None:
                    if len(self._judged) >= MAX_JUDGED_FLOWS:
                        self._judged.clear()
                    self._judged.add(flow.flow_id)
                self._record(verdicts, event)
            return
        if kind is FlowSummary:
            assert isinstance(event, FlowSummary)
            if event.flow.flow_id in self._judged:
                self._judged.discard(event.flow.flow_id)
                return
            name = self.flow_protocol(event.flow) if self.flow_protocol is not None else None
            if name is None and self.wait_for_names > 0:
                if len(self._waiting) >= MAX_WAITING_FLOWS:
                    self._judge_flow(self._waiting.popleft()[1])
                self._waiting.append((event.ts + self.wait_for_names, event))
                return
            self._judge_flow(event, name)

    def _judge_flow(self, summary: FlowSummary, name: str | None = None) -> None:
        """Judge an ended flow no dissector claimed, as the protocol tshark named (else "unknown")."""
        if name is None and self.flow_protocol is not None:
            name = self.flow_protocol(summary.flow)
        # a flow tshark named is that protocol's communication: the alert's app_proto says so, as its
        # verdict and edge do (the store matches it to the edge the inventory renamed after it)
        self._record(evaluate_flow(self._policy, summary, name), summary, name or summary.app_proto)

    def judge_waiting_flows(self, now: float | None = None) -> None:
        """Judge the flows that waited for a name until ``now`` (packet time); every one when None."""
        waiting = self._waiting
        while waiting and (now is None or waiting[0][0] <= now):
            self._judge_flow(waiting.popleft()[1])

    def _record(self, verdicts: list[Verdict], event: AppEvent, app_proto: str | None = None) -> None:
        ts = event.ts
        if ts > self._oldest_start + self._policy.window:
            self._expire(ts)
        for v in verdicts:
            self.operations += 1
            label = f"{v.protocol}:{v.operation}"
            if v.allowed:
                if v.scope == "conduit":
                    self._stats(v.conduit).add(self._stats(v.conduit).allowed, label)
                    self.rules_used.add((v.conduit, v.rule_index))
                elif v.scope == "intra_zone":
                    self.intra_zone[v.src_zone] += 1
                else:
                    self.default_allowed[(v.src_zone, v.dest_zone)] += 1
                continue
            self.violations += 1
            if v.conduit:
                self._stats(v.conduit).add(self._stats(v.conduit).denied, label)
            else:
                self.no_conduit[(v.src_zone, v.dest_zone)] += 1
            flow = event.flow
            if flow is not None:
                self._aggregate(v, flow, ts, event.app_proto if app_proto is None else app_proto)

    def _stats(self, conduit: str) -> ConduitStats:
        s = self.stats.get(conduit)
        if s is None:
            s = self.stats[conduit] = ConduitStats()
        return s

    # --- aggregation ---------------------------------------------------------------------------

    def _aggregate(self, v: Verdict, flow: FlowRef, ts: float, app_proto: str) -> None:
        key = (v.rule, flow.client_ip, flow.server_ip)
        # the edge as the inventory names it (sensor/assets/observer.py): the protocol, else the transport
        edge = (v.protocol if v.protocol and v.protocol != "unknown" else flow.transport, flow.server_port)
        agg = self._pending.get(key)
        if agg is not None and ts - agg.first_ts > self._policy.window:
            self._emit(self._pending.pop(key))
            agg = None
        if agg is None:
            if len(self._pending) >= MAX_PENDING_ALERTS:
                oldest = next(iter(self._pending))
                self._emit(self._pending.pop(oldest))
            summary = v.evidence["summary"] if v.evidence else v.operation
            self._pending[key] = _Aggregate(v, flow, ts, ts, app_proto, examples=[summary], edges=[edge])
            self._oldest_start = min(self._oldest_start, ts)
            return
        agg.count += 1
        agg.last_ts = max(agg.last_ts, ts)  # files replayed out of time order
        if edge != agg.edges[0] and edge not in agg.edges:
            if len(agg.edges) < MAX_EDGES:
                agg.edges.append(edge)
            else:
                agg.edges_truncated = True
        if len(agg.examples) < MAX_EXAMPLES and v.evidence is not None:
            summary = v.evidence["summary"]
            if summary not in agg.examples:
                agg.examples.append(summary)

    def _expire(self, now: float) -> None:
        window = self._policy.window
        due = [k for k, a in self._pending.items() if now - a.first_ts > window]
        for k in due:
            self._emit(self._pending.pop(k))
        self._oldest_start = min((a.first_ts for a in self._pending.values()), default=float("inf"))

    def flush(self, now: float) -> None:
        """Publish every pending aggregate (end of input, or periodically on a live sensor), after judging
        the flows whose wait for a name is over."""
        self.judge_waiting_flows(now)
        for k in list(self._pending):
            self._emit(self._pending.pop(k))
        self._oldest_start = float("inf")

    def _emit(self, agg: _Aggregate) -> None:
        v = agg.verdict
        evidence = dict(v.evidence or {})
        if len(agg.examples) > 1:
            evidence["distinct_operations"] = list(agg.examples)
        also = ""
        if len(agg.edges) > 1:  # one alert, several communications of the two hosts: each is violating
            evidence["protocols"] = list(dict.fromkeys(protocol for protocol, _ in agg.edges))
            evidence["edges"] = [{"protocol": protocol, "port": port} for protocol, port in agg.edges]
            also = "; also " + ", ".join(f"{protocol}/{port}" for protocol, port in agg.edges[1:])
            if agg.edges_truncated:
                evidence["edges_truncated"] = True
                also += ", ..."
        where = f"via conduit {v.conduit}" if v.conduit else "with no conduit"
        signature = (
            f"Policy violation {v.reason}: {evidence.get('summary', v.operation)} from {agg.flow.client_ip} "
            f"[{v.src_zone}] to {agg.flow.server_ip}:{agg.flow.server_port} [{v.dest_zone}] {where}"
            f" ({v.detail}){also}"
        )
        alert = Alert(
            ts=agg.first_ts,
            flow=agg.flow,
            rule=v.rule,
            signature=signature,
            category="policy",
            severity=v.severity,
            signature_id=stable_signature_id(v.rule),
            to_server=True,
            app_proto=agg.app_proto,
            src_zone=v.src_zone,
            dest_zone=v.dest_zone,
            conduit=v.conduit,
            mitre=v.mitre,
            evidence=evidence,
            count=agg.count,
            last_ts=agg.last_ts,
        )
        self.alerts_published += 1
        self.publish(alert)

    # --- reports -------------------------------------------------------------------------------

    def unused_rules(self) -> list[dict[str, Any]]:
        """Allow entries that allowed nothing: candidates for removal (least privilege)."""
        out = []
        for conduit in self._policy.policy.conduits:
            for index, entry in enumerate(conduit.allow):
                if (conduit.id, index) not in self.rules_used:
                    out.append({"conduit": conduit.id, "index": index, "protocol": entry.protocol})
        return out

    def report(self) -> dict[str, Any]:
        """Per conduit: operations allowed and denied, entries never used; traffic without a conduit."""
        conduits: dict[str, Any] = {}
        unused = self.unused_rules()
        for conduit in self._policy.policy.conduits:
            s = self.stats.get(conduit.id, ConduitStats())
            conduits[conduit.id] = {
                "from": conduit.from_zone,
                "to": conduit.to_zone,
                "allowed": dict(sorted(s.allowed.items())),
                "denied": dict(sorted(s.denied.items())),
                "unused_rules": [u["index"] for u in unused if u["conduit"] == conduit.id],
            }
        return {
            "conduits": conduits,
            "no_conduit": [
                {"src_zone": a, "dest_zone": b, "count": n} for (a, b), n in sorted(self.no_conduit.items())
            ],
            "intra_zone_allowed": dict(sorted(self.intra_zone.items())),
            "default_allowed": [
                {"src_zone": a, "dest_zone": b, "count": n}
                for (a, b), n in sorted(self.default_allowed.items())
            ],
            "unused_rules": unused,
        }

    def section(self) -> dict[str, Any]:
        """The ``policy`` section of the replay summary."""
        return {
            "source": self.source,
            "operations": self.operations,
            "violations": self.violations,
            "alerts": self.alerts_published,
            "reloads": self.reloads,
            "no_conduit": sum(self.no_conduit.values()),
            "denied_by_conduit": {
                k: sum(s.denied.values()) for k, s in sorted(self.stats.items()) if s.denied
            },
            "unused_rules": len(self.unused_rules()),
        }
