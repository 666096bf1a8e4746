"""The anomaly observer: learns a baseline, then detects, explains and aggregates (DESIGN.md §1).

Modes (ANCHORS.md §1 item 10):

* **learning** for ``learn_for`` seconds of packet time from the first event it sees (or, without
  a window and without a stored baseline, until :meth:`AnomalyObserver.stop_learning` is called:
  "until told"); every event is folded into the baseline, nothing is raised;
* **detecting** afterwards: each event is judged by the detectors (novelty, recon, impairment,
  timing, process, protocol), whose findings become :class:`~sensor.records.Alert` records with
  category ``anomaly`` and rule ``anomaly:<kind>``;
* an asset reset with ``relearn`` seconds (``zonewarden baseline reset --asset IP``) is learned
  again for that long at the start of the next run while every other asset is judged.

Aggregation: findings with the same kind, source and destination within ``aggregate_window``
seconds of the first become one alert whose ``count`` is the number of occurrences and whose
evidence holds every fact needed to accept it (``zonewarden baseline accept ALERT_ID``). Alerts
are published when their window closes (packet time) or at :meth:`flush`. The alert id is the
record's deterministic one (rule, endpoints, first occurrence).

Per event the work is a type dispatch and a few dict/set lookups; windows are bounded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sensor.detect import attack
from sensor.detect.baseline import Baseline, Fact
from sensor.detect.findings import Finding
from sensor.detect.impairment import ImpairmentDetector
from sensor.detect.learn import (
    Learner,
    ModbusOp,
    ValueExtractor,
    anomaly_fact,
    flow_facts,
    modbus_facts,
    modbus_op,
    mqtt_facts,
    opcua_facts,
    poll_key,
)
from sensor.detect.novelty import NoveltyDetector
from sensor.detect.process import ProcessDetector
from sensor.detect.protocol import ProtocolDetector, raised
from sensor.detect.recon import ReconDetector
from sensor.detect.timing import TimingDetector
from sensor.detect.window import RateWindow
from sensor.dissectors.modbus.codes import function_name
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.errors import UserError
from sensor.records import Alert, AppEvent, FlowSummary, ProtocolAnomaly, stable_signature_id

log = logging.getLogger(__name__)

AGGREGATE_WINDOW: Final = 60.0
MAX_EVIDENCE_FACTS: Final = 256
MAX_EVIDENCE_ITEMS: Final = 256
MAX_SERIES: Final = 100_000
PEAK_WINDOW: Final = 5.0  # same window as impairment's burst detection


@dataclass(slots=True)
class _Aggregate:
    first: Finding
    count: int
    last_ts: float
    facts: list[Fact]
    items: list[Any] = field(default_factory=list)


def _details(event: AppEvent, op: ModbusOp | None) -> dict[str, Any]:
    """The exact operation behind a finding, JSON-safe and small."""
    if op is not None:
        out: dict[str, Any] = {
            "unit": op.unit,
            "function": op.function,
            "function_name": function_name(op.function),
            "status": op.status,
        }
        if op.subfunction is not None:
            out["subfunction"] = op.subfunction
        if op.exception_code is not None:
            out["exception_code"] = op.exception_code
        if op.reads:
            out["reads"] = [list(r) for r in op.reads]
        if op.writes:
            out["writes"] = [list(w) for w in op.writes]
        if op.written:
            out["written_values"] = [v for _t, _a, v in op.written[:16]]
        return out
    if isinstance(event, OpcUaMessage):
        return {
            "service": event.service,
            "message_type": event.message_type,
            "security_mode": event.security_mode,
        }
    if isinstance(event, MqttPacket):
        d: dict[str, Any] = {"packet_type": event.type_name.lower(), "client_id": event.client_id}
        if event.topic:
            d["topic"] = event.topic
        return d
    return {}


class AnomalyObserver:
    """An :class:`~sensor.pipeline.Observer`: ``handle`` every event, ``flush`` at end of input."""

    def __init__(
        self,
        publish: Callable[[Alert], None],
        baseline: Baseline | None = None,
        learn_for: float | None = None,
        save_to: Path | None = None,
        aggregate_window: float = AGGREGATE_WINDOW,
    ) -> None:
        self.publish = publish
        self.baseline = baseline if baseline is not None else Baseline()
        self.learn_for = learn_for
        # A stored baseline without a window: detect from the first event. Otherwise learn.
        self.learning = learn_for is not None or baseline is None
        self.learn_until: float | None = None
        self.learned_until: float | None = None
        self.save_to = save_to
        self.aggregate_window = aggregate_window
        self.learner = Learner(self.baseline, MAX_SERIES)
        self.values = ValueExtractor()
        self.novelty = NoveltyDetector(self.baseline, self.emit)
        self.recon = ReconDetector(self.baseline, self.emit)
        self.impairment = ImpairmentDetector(self.baseline, self.emit)
        self.timing = TimingDetector(self.baseline, self.emit)
        self.process = ProcessDetector(self.baseline, self.emit)
        self.protocol = ProtocolDetector(self.baseline, self.emit)
        self.pending: OrderedDict[tuple[str, str, str], _Aggregate] = OrderedDict()
        self.published = 0
        self.findings = 0
        self.first_ts: float | None = None
        self.relearn_until: dict[str, float] = {}
        self._writes: RateWindow[tuple[str, str]] = RateWindow(PEAK_WINDOW)
        self._exceptions: RateWindow[tuple[str, str]] = RateWindow(PEAK_WINDOW)
        self._event: AppEvent | None = None
        self._op: ModbusOp | None = None
        self.now = 0.0

    @classmethod
    def from_config(
        cls, publish: Callable[[Alert], None], learn_for: float | None, baseline_path: Path | None
    ) -> AnomalyObserver:
        """``--learn-for`` / ``--baseline``: reuse a stored baseline if the file exists, save after."""
        if learn_for is not None and not learn_for >= 0:
            raise UserError(f"--learn-for {learn_for}: want a number of seconds >= 0")
        baseline = (
            Baseline.load(baseline_path) if baseline_path is not None and baseline_path.exists() else None
        )
        return cls(publish, baseline=baseline, learn_for=learn_for, save_to=baseline_path)

    # --- modes ------------------------------------------------------------------------------------

    def stop_learning(self, at: float) -> None:
        """Leave learning mode ("until told"); detection starts with the next event."""
        if not self.learning:
            return
        self.learning = False
        self.learned_until = at
        self.baseline.commit("learn", at, f"learned until packet time {at:.6f}")
        self._baseline_changed()
        self.timing.start()
        log.info("anomaly detection: learned until %.6f, %s", at, self.baseline.counts())

    def _baseline_changed(self) -> None:
        for detector in (self.novelty, self.recon, self.impairment):
            detector.baseline_changed()

    def baseline_edited(self) -> None:
        """The baseline was changed in place from outside the packet path (an alert accepted, an asset
        reset through the web API): drop what the detectors derived from it."""
        self._baseline_changed()

    def _begin(self, ts: float) -> None:
        self.first_ts = ts
        if self.learning and self.learn_for is not None:
            self.learn_until = ts + self.learn_for
        self.relearn_until = {ip: ts + secs for ip, secs in self.baseline.relearn.items()}

    def _learns(self, a: str, b: str, ts: float) -> bool:
        """True while an event between a and b is learned rather than judged."""
        if self.learning:
            return True
        r = self.relearn_until
        return bool(r) and (ts < r.get(a, 0.0) or ts < r.get(b, 0.0))

    # --- events -----------------------------------------------------------------------------------

    def handle(self, event: AppEvent) -> None:
        ts = event.ts
        if self.first_ts is None:
            self._begin(ts)
        if ts > self.now:
            self.now = ts
        if self.learning:
            if self.learn_until is not None and ts >= self.learn_until:
                self.stop_learning(self.learn_until)
        else:
            self.timing.tick(ts)
            if self.pending:
                self._expire(ts)
        kind = type(event)
        self._event = event
        if kind is ModbusTransaction:
            assert isinstance(event, ModbusTransaction)
            self._modbus(event)
        elif kind is OpcUaMessage:
            assert isinstance(event, OpcUaMessage)
            self._opcua(event)
        elif kind is MqttPacket:
            assert isinstance(event, MqttPacket)
            self._mqtt(event)
        elif kind is FlowSummary:
            assert isinstance(event, FlowSummary)
            self._flow(event)
        elif kind is ProtocolAnomaly:
            assert isinstance(event, ProtocolAnomaly)
            self._anomaly(event)
        self._event = None
        self._op = None

    def _learn_facts(self, facts: list[Fact], ts: float) -> None:
        changed = False
        add = self.baseline.add
        for fact in facts:
            changed |= add(fact)
        if not self.baseline.created:
            self.baseline.created = ts
        if changed and not self.learning:
            self._baseline_changed()

    def _modbus(self, tx: ModbusTransaction) -> None:
        op = modbus_op(tx)
        if op is None or tx.flow is None:
            return
        flow = tx.flow
        self._op = op
        facts = modbus_facts(op)
        key = poll_key(op)
        values = self.values.modbus(op)
        if self._learns(op.client, op.server, op.ts):
            self._learn_facts(facts, op.ts)
            if key is not None:
                self.learner.poll(key, op.ts)
                self.timing.seen(key, op.ts, flow)
            for vkey, v in values:
                self.learner.value(vkey, v, tx.ts)
            self._learn_peaks(op)
            return
        self.novelty.modbus(op, facts, flow, {})
        self.recon.modbus(op, flow)
        self.impairment.modbus(op, flow, {})
        if key is not None:
            self.timing.poll(key, op.ts, flow)
        for vkey, v in values:
            self.process.value(vkey, v, tx.ts, flow, op.client, op.server, "modbus")

    def _learn_peaks(self, op: ModbusOp) -> None:
        pair = (op.client, op.server)
        peaks = self.baseline.peaks
        if op.writes:
            n = self._writes.add(pair, op.ts)
            if n > peaks.get(("writes", *pair), 0.0):
                peaks[("writes", *pair)] = float(n)
        if op.status == "exception":
            n = self._exceptions.add(pair, op.ts)
            if n > peaks.get(("exceptions", *pair), 0.0):
                peaks[("exceptions", *pair)] = float(n)

    def _opcua(self, msg: OpcUaMessage) -> None:
        flow = msg.flow
        if flow is None:
            return
        facts = opcua_facts(msg)
        values = self.values.opcua(msg)
        if self._learns(flow.client_ip, flow.server_ip, msg.ts):
            self._learn_facts(facts, msg.ts)
            for vkey, v in values:
                self.learner.value(vkey, v, msg.ts)
            return
        self.novelty.opcua(msg, facts, flow, {})
        self.recon.opcua(msg, flow)
        self.impairment.opcua(msg, flow, {})
        for vkey, v in values:
            self.process.value(vkey, v, msg.ts, flow, flow.client_ip, flow.server_ip, "opcua")

    def _mqtt(self, pkt: MqttPacket) -> None:
        flow = pkt.flow
        if flow is None:
            return
        facts = mqtt_facts(pkt)
        values = self.values.mqtt(pkt)
        if self._learns(flow.client_ip, flow.server_ip, pkt.ts):
            self._learn_facts(facts, pkt.ts)
            for vkey, v in values:
                self.learner.value(vkey, v, pkt.ts)
            return
        self.novelty.mqtt(pkt, facts, flow, {})
        self.recon.mqtt(pkt, flow)
        self.impairment.mqtt(pkt, flow, {})
        for vkey, v in values:
            self.process.value(vkey, v, pkt.ts, flow, flow.client_ip, flow.server_ip, "mqtt")

    def _flow(self, fs: FlowSummary) -> None:
        facts = flow_facts(fs)
        f = fs.flow
        if self._learns(f.client_ip, f.server_ip, fs.start):
            self._learn_facts(facts, fs.end)
            return
        if facts:

            def describe(fact: Fact) -> str:
                return f"{f.transport} port {f.server_port}, {fs.pkts_toserver + fs.pkts_toclient} packets"

            self.novelty.check(facts, fs.start, f, fs.app_proto or f.transport, describe, {})
        self.recon.flow(fs)

    def _anomaly(self, a: ProtocolAnomaly) -> None:
        if a.flow is None or not raised(a):
            return
        if self._learns(a.flow.client_ip, a.flow.server_ip, a.ts):
            fact = anomaly_fact(a)
            if fact is not None:
                self._learn_facts([fact], a.ts)
            return
        self.protocol.anomaly(a)

    # --- findings -> alerts -------------------------------------------------------------------------

    def emit(self, finding: Finding) -> None:
        """Aggregate a finding (called by the detectors)."""
        if self.baseline.allows(finding.kind, finding.src, finding.dst):
            return
        self.findings += 1
        if not finding.details and self._event is not None:
            finding.details = _details(self._event, self._op)
        key = (finding.kind, finding.src, finding.dst)
        agg = self.pending.get(key)
        if agg is not None and finding.ts - agg.first.ts <= self.aggregate_window:
            agg.count += finding.count
            agg.last_ts = max(agg.last_ts, finding.ts)
            for fact in finding.facts:
                if len(agg.facts) < MAX_EVIDENCE_FACTS and fact not in agg.facts:
                    agg.facts.append(fact)
            room = MAX_EVIDENCE_ITEMS - len(agg.items)
            if room > 0:
                agg.items.extend(finding.items[:room])
            return
        if agg is not None:
            del self.pending[key]
            self._publish(agg)
        self.pending[key] = _Aggregate(
            finding, finding.count, finding.ts, list(finding.facts[:MAX_EVIDENCE_FACTS]), list(finding.items)
        )

    def _expire(self, now: float) -> None:
        window = self.aggregate_window
        pending = self.pending
        while pending:
            key, agg = next(iter(pending.items()))
            if agg.first.ts + window >= now:
                break
            del pending[key]
            self._publish(agg)

    def _publish(self, agg: _Aggregate) -> None:
        f = agg.first
        kind_info = attack.info(f.kind)
        severity = kind_info.severity
        if (
            f.kind.startswith("protocol.")
            and f.kind.removeprefix("protocol.") not in attack.PROTOCOL_SEVERITY
        ):
            severity = int(f.details.get("dissector_severity", severity))
        rule = f"anomaly:{f.kind}"
        evidence: dict[str, Any] = {
            "kind": f.kind,
            "concern": kind_info.concern,
            "explanation": f.explanation,
            "src": f.src,
            "dst": f.dst,
            "details": f.details,
            "baseline": [_fact_json(x) for x in agg.facts],
            "baseline_revision": self.baseline.revision,
        }
        if kind_info.mitre:
            evidence["techniques"] = {t: attack.TECHNIQUES.get(t, "") for t in kind_info.mitre}
        if agg.items:
            evidence["items"] = agg.items
        self.published += 1
        self.publish(
            Alert(
                ts=f.ts,
                flow=f.flow,
                rule=rule,
                signature=f.explanation if agg.count == 1 else f"{f.explanation} [{agg.count} occurrences]",
                category="anomaly",
                severity=severity,
                signature_id=stable_signature_id(rule),
                to_server=True,
                app_proto=f.app_proto,
                mitre=kind_info.mitre,
                evidence=evidence,
                count=agg.count,
                last_ts=agg.last_ts,
            )
        )

    def tick(self, now: float) -> None:
        """Packet time ``now`` on a live sensor between events (the periodic flush of sensor/live.py):
        a learning window that has passed ends, aggregates whose window has passed are published.
        Nothing is saved: the baseline is saved by :meth:`flush` at the end."""
        if now <= self.now:
            now = self.now
        if self.learning:
            if self.learn_until is not None and now >= self.learn_until:
                self.stop_learning(self.learn_until)
        elif self.pending:
            self._expire(now)

    def flush(self, now: float) -> None:
        """End of input (or a periodic flush of a live sensor): publish what is pending, save."""
        now = max(now, self.now)
        if not self.learning:
            self.timing.tick(now)
        while self.pending:
            _key, agg = self.pending.popitem(last=False)
            self._publish(agg)
        if self.first_ts is not None:
            expired = [ip for ip, until in self.relearn_until.items() if until <= now]
            for ip in expired:
                self.baseline.relearn.pop(ip, None)
        if self.save_to is not None:
            action = "learn" if self.learning else "update"
            self.baseline.commit(action, now, f"run ending at packet time {now:.6f}")
            self.baseline.save(self.save_to)

    def section(self) -> dict[str, Any]:
        """The ``baseline`` key of the replay summary."""
        return {
            "mode": "learning" if self.learning else "detecting",
            "first_event": self.first_ts,
            "learned_until": self.learned_until,
            "revision": self.baseline.revision,
            "facts": self.baseline.counts(),
            "findings": self.findings,
            "alerts": self.published,
        }


def _fact_json(fact: Fact) -> list[Any]:
    return [list(x) if isinstance(x, tuple) else x for x in fact]
