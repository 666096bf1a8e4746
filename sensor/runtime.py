"""The one place that wires the sensor's components together (DESIGN.md §1).

Everything else receives its collaborators; only this module knows which dissectors, sinks and
sources make up a running sensor, in which order observers see events, and how a replay of several
files or a live capture is driven.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensor.assets.observer import InventoryObserver
from sensor.capture.base import CaptureCounters, Source
from sensor.capture.file import open_capture
from sensor.dissectors.base import Dissector
from sensor.dissectors.modbus import ModbusDissector
from sensor.dissectors.mqtt import MqttDissector
from sensor.dissectors.opcua import OpcUaDissector
from sensor.dissectors.tls import TlsDissector
from sensor.errors import CaptureError
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.outputs.eve import EveWriter, eve_timestamp
from sensor.pipeline import AlertRouter, CoreStats, EventSink, Observer, Pipeline, StatsSink
from sensor.records import Alert, Frame

if TYPE_CHECKING:
    from api.pki.wire import CertificateObserver
    from policy.observer import FlowProtocol, PolicyObserver
    from rules.engine import RulesObserver
    from sensor.config import OutputsConfig
    from sensor.deep import OtherProtocolFlow
    from sensor.detect.observer import AnomalyObserver
    from sensor.outputs.deliver import Deliverer

log = logging.getLogger(__name__)


def default_dissectors() -> list[Dissector]:
    """The native dissectors, in the order they are offered a flow of unknown port."""
    return [ModbusDissector(), OpcUaDissector(), MqttDissector(), TlsDissector()]


@dataclass(frozen=True, slots=True)
class SensorConfig:
    limits: Limits = DEFAULT_LIMITS
    eve_path: Path | None = None
    deep: bool = False  # identify non-native ICS protocols with tshark after the native pass
    db_path: Path | None = None  # SQLite store for inventory, graph and alerts (none: in memory only)
    policy_path: Path | None = None  # zone/conduit policy (policy/) checked against every operation
    learn_for: float | None = None  # anomaly detection: learn this many seconds of packet time first
    baseline_path: Path | None = None  # anomaly detection: baseline reused if it exists, saved after
    rule_paths: tuple[Path, ...] = ()  # Suricata-format rules (rules/): files or directories
    rule_vars: tuple[tuple[str, str], ...] = ()  # rule variables ($HOME_NET ...) over the defaults
    outputs: OutputsConfig | None = None  # alert sinks (syslog, webhook, EVE file) from --config
    pki_dir: Path | None = None  # certificates seen on the wire judged against this PKI (api/pki/wire.py)
    cert_expiring_days: int = 30  # cert:expiring_soon when a certificate in use expires within N days


@dataclass(slots=True)
class FileReport:
    path: str
    packets: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


class Sensor:
    """A wired pipeline with its statistics and outputs."""

    def __init__(
        self,
        config: SensorConfig,
        extra_sinks: Sequence[EventSink] = (),
        observers: Sequence[Callable[[Callable[[Alert], None]], Observer]] = (),
    ) -> None:
        """``observers`` are factories given the alert publisher, e.g. ``lambda publish: X(publish)``."""
        self.config = config
        compiled_policy = None
        if config.policy_path is not None:  # before any file is opened: a bad one raises PolicyError
            from policy.index import load_compiled

            # zones by asset name or tag ask the inventory, built below, at evaluation time
            compiled_policy = load_compiled(config.policy_path, lambda ip: self.inventory.labels(ip))
        pki_watcher = None
        if config.pki_dir is not None:  # read without a passphrase; a bad directory raises UserError
            from api.pki.wire import PkiDirectoryWatcher

            pki_watcher = PkiDirectoryWatcher(config.pki_dir)
            pki_snapshot = pki_watcher.load()
        self.dissectors = default_dissectors()
        self.protocol_stats = [StatsSink(d.name, d.stats()) for d in self.dissectors]
        self.eve = EveWriter(config.eve_path) if config.eve_path else None
        self.alerts = AlertRouter()
        # inventory + graph first (DESIGN.md §1); its store is the first, durable, alert sink
        self.inventory = InventoryObserver.open(self.alerts.publish, config.limits, config.db_path)
        if self.inventory.store is not None:
            self.alerts.sinks.append(self.inventory.store)
        self.observers: list[Observer] = [self.inventory, *(make(self.alerts.publish) for make in observers)]
        self.policy: PolicyObserver | None = None
        if compiled_policy is not None:
            from policy.observer import PolicyObserver

            self.policy = PolicyObserver(compiled_policy, self.alerts.publish, source=str(config.policy_path))
            self.observers.append(self.policy)
        self.anomaly: AnomalyObserver | None = None
        if config.learn_for is not None or config.baseline_path is not None:
            from sensor.detect.observer import AnomalyObserver

            self.anomaly = AnomalyObserver.from_config(
                self.alerts.publish, config.learn_for, config.baseline_path
            )
            self.observers.append(self.anomaly)
        self.certificates: CertificateObserver | None = None
        if pki_watcher is not None:
            from api.pki.wire import CertificateObserver

            self.certificates = CertificateObserver(
                self.alerts.publish,
                pki_snapshot,
                watcher=pki_watcher,
                expiring_days=config.cert_expiring_days,
                inventory=self.inventory.inventory,
                limits=config.limits,
            )
            self.observers.append(self.certificates)
        self.rules: RulesObserver | None = None
        if config.rule_paths:
            from rules.engine import RuleSet, RulesObserver

            ruleset = RuleSet.from_paths(list(config.rule_paths), dict(config.rule_vars))
            self.rules = RulesObserver(self.alerts.publish, ruleset)
            self.observers.append(self.rules)
        sinks: list[EventSink] = []
        if self.eve is not None:
            sinks.append(self.eve)
            self.alerts.sinks.append(self.eve)
        self.deliverer: Deliverer | None = None
        if config.outputs is not None and config.outputs.sinks:
            from sensor.outputs.deliver import Deliverer

            # delivery starts from a durable copy: the store's, once committed (Store.on_commit)
            self.deliverer = Deliverer.from_config(config.outputs)
            if self.inventory.store is not None:
                self.inventory.store.on_commit.append(self.deliverer.submit_many)
            else:  # no store: the outbox is the durable copy
                self.alerts.sinks.append(self.deliverer)
            self.deliverer.start()
        sinks.extend(extra_sinks)
        sinks.extend(self.observers)
        self.pipeline = Pipeline(self.dissectors, sinks, config.limits)
        for stats in self.protocol_stats:
            self.pipeline.add_sink(stats, (stats.name,))
        self.core_stats = CoreStats(self.pipeline)
        self.pipeline.add_sink(self.core_stats, ("",))
        self.capture = CaptureCounters()  # the sources that closed, summed
        self._reading: Source | None = None  # the source being read now (its counters still grow)
        # Readers (the flush thread's commit, a status request) may run while run_source closes a
        # source: this lock makes "absorb its counters and forget it" one step for them.
        self._capture_lock = threading.Lock()
        self.files: list[FileReport] = []
        self.other_protocols: dict[str, int] | None = None
        self.before_tshark: Callable[[], None] | None = None  # --deep: called as tshark starts reading
        # tshark's flows of these files, when identified before the native pass (identify_before_replay)
        self._identified: tuple[tuple[Path, ...], list[OtherProtocolFlow]] | None = None
        if self.inventory.store is not None:  # the store keeps the counters (GET /api/v1/status)
            self.inventory.summary_counters = self.saved_counters

    def identify_before_replay(self, paths: Sequence[Path]) -> None:
        """With ``deep`` and a policy: name the other protocols of ``paths`` with tshark before the native
        pass, so that the policy judges a flow no native dissector claims (S7comm-plus, DNP3, EtherNet/IP
        ...) as the protocol tshark named, as ``zonewarden policy check --deep`` does; a conduit allowing
        ``s7comm_plus`` over tcp/102 then allows it (judged as "unknown" tcp/102, it was a violation).
        :meth:`finish` reuses these flows: tshark reads the files once. Without a policy nothing runs
        here; tshark runs after the pass, in :meth:`finish`, as before."""
        if not self.config.deep or self.policy is None:
            return
        from sensor.deep import flow_protocol_lookup

        flows = self._identify_other_protocols(paths)
        self._identified = (tuple(paths), flows)
        self.judge_flows_as(flow_protocol_lookup(flows))

    def _identify_other_protocols(self, paths: Sequence[Path]) -> list[OtherProtocolFlow]:
        """tshark's pass over the files (``deep``), announced to :attr:`before_tshark` first."""
        from sensor.deep import identify_other_protocols

        if self.before_tshark is not None:
            self.before_tshark()
        return identify_other_protocols(list(paths))

    def judge_flows_as(self, flow_protocol: FlowProtocol, wait_for_names: float = 0.0) -> None:
        """Name the protocol of the flows no native dissector claimed, for the policy (tshark's names).
        ``wait_for_names``: seconds (packet time) an ended flow waits for a name that may still come
        (live tshark lags behind the sensor) before it is judged as "unknown"."""
        if self.policy is not None:
            self.policy.flow_protocol = flow_protocol
            self.policy.wait_for_names = wait_for_names

    def capture_counters(self) -> dict[str, int]:
        """The capture counters so far: the closed sources' plus those of the source being read, so
        that a live capture's drops show while it runs (its capture thread updates them: plain ints)."""
        with self._capture_lock:
            totals = self.capture.as_dict()
            reading = self._reading
            if reading is not None:
                for key, value in reading.counters.as_dict().items():
                    totals[key] += value
        return totals

    def run_source(self, source: Source, on_frame: Callable[[Frame], None] | None = None) -> None:
        """Drive frames of one source through the pipeline (raises CaptureError on corruption).

        Its counters count from now (:meth:`capture_counters`) and are absorbed into :attr:`capture`
        once it is closed: a live source's capture thread counts its last kernel drops while closing."""
        with self._capture_lock:
            self._reading = source
        process = self.pipeline.process
        try:
            frames: Iterator[Frame] = source.frames()
            if on_frame is None:
                for frame in frames:
                    process(frame)
            else:
                for frame in frames:
                    process(frame)
                    on_frame(frame)
        finally:
            try:
                source.close()
            finally:
                with self._capture_lock:
                    for key, value in source.counters.as_dict().items():
                        setattr(self.capture, key, getattr(self.capture, key) + value)
                    self._reading = None

    def replay_file(self, path: Path, on_frame: Callable[[Frame], None] | None = None) -> FileReport:
        report = FileReport(str(path))
        self.files.append(report)
        before = self.pipeline.packets
        source: Source | None = None
        try:
            source = open_capture(path, self.config.limits)
            self.run_source(source, on_frame)
        except CaptureError as exc:
            report.error = str(exc)
        except OSError as exc:
            report.error = f"{path}: {exc.strerror or exc}"
        finally:
            report.packets = self.pipeline.packets - before
            if source is not None:
                report.warnings.extend(source.warnings)
        return report

    def finish(
        self, paths: Sequence[Path] = (), before_close: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Flush flows, run the deep pass if asked, write the final stats record; return the summary.

        ``before_close`` runs after the flows ended and before the store closes (the live runner hands
        over tshark's last flows there, so that they rename the native edges just absorbed)."""
        self.pipeline.finish()
        if self.policy is not None:  # no name can come any more: every flow still waiting is judged
            self.policy.judge_waiting_flows()
        for observer in self.observers:
            observer.flush(self.pipeline.now)
        if self.config.deep:
            from sensor.deep import summarize

            identified = self._identified
            if identified is not None and identified[0] == tuple(paths):  # named before the pass
                other_flows = identified[1]
            else:
                other_flows = self._identify_other_protocols(paths)
            self.other_protocols = summarize(other_flows)
            self.inventory.absorb_other_protocols(other_flows)
        if before_close is not None:
            before_close()
        self.inventory.close(self.pipeline.now)
        if self.deliverer is not None:
            self.deliverer.close()
        summary = self.summary()
        if self.eve is not None:
            self.eve.write_raw(
                {"timestamp": eve_timestamp(self.pipeline.now), "event_type": "stats", "stats": summary}
            )
            self.eve.close()
        return summary

    def saved_counters(self) -> dict[str, int]:
        """The summary's counters as the store keeps them at each commit (sensor/store/summary_counters.py):
        packets, bytes, flows, decode errors, flow table (TCP gaps), capture (drops), per-protocol
        counts and alerts; capture counters include the source being read (a live capture's drops)."""
        import time

        from sensor.store.summary_counters import SAVED_AT, flatten_summary

        doc = self.core_stats.section()
        doc["capture"] = self.capture_counters()
        for s in self.protocol_stats:
            doc[s.name] = s.stats.section()
        doc["alerts"] = self.alerts.section()
        doc[SAVED_AT] = int(time.time())
        doc["last_packet_ts"] = int(self.pipeline.now or 0)
        return flatten_summary(doc)

    def summary(self) -> dict[str, Any]:
        out = self.core_stats.section()
        out["capture"] = self.capture_counters()
        for s in self.protocol_stats:
            out[s.name] = s.stats.section()
        out["alerts"] = self.alerts.section()
        if self.policy is not None:
            out["policy"] = self.policy.section()
        if self.anomaly is not None:
            out["baseline"] = self.anomaly.section()
        if self.rules is not None:
            out["rules"] = self.rules.section()
        if self.certificates is not None:
            out["certificates"] = self.certificates.section()
        if self.deliverer is not None:
            out["outputs"] = self.deliverer.section()
        if self.other_protocols is not None:
            out["other_protocols"] = self.other_protocols
        out["assets"] = len(self.inventory.inventory)
        out["edges"] = len(self.inventory.graph)
        out["roles"] = self.inventory.roles()
        out["inventory"] = self.inventory.section()
        out["files"] = [
            {"path": f.path, "packets": f.packets, "warnings": f.warnings, "error": f.error}
            for f in self.files
        ]
        return out


def replay(
    paths: Sequence[Path],
    config: SensorConfig = SensorConfig(),
    on_frame: Callable[[Frame], None] | None = None,
    on_file: Callable[[Path], None] | None = None,
    before_tshark: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], list[FileReport]]:
    """Replay capture files in order into one sensor; return the summary and per-file reports.
    ``before_tshark`` is called when tshark starts reading the files (``deep``), before or after the pass.

    A file that cannot be read is reported (``FileReport.error``) and the next one is processed:
    one bad file does not lose the others' results.
    """
    sensor = Sensor(config)
    sensor.before_tshark = before_tshark
    sensor.identify_before_replay(paths)  # deep + policy only: tshark first, so the policy knows its names
    for path in paths:
        if on_file is not None:
            on_file(path)
        sensor.replay_file(path, on_frame)
    summary = sensor.finish(paths)
    return summary, sensor.files
