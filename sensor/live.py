"""The running sensor: one runner for ``zonewarden sniff`` and ``zonewarden serve --sniff/--replay``.

:class:`LiveRunner` drives a wired :class:`sensor.runtime.Sensor` over a live interface or capture files
and runs beside it everything a sensor that keeps running needs. Threads (DESIGN.md §1: concurrency
lives only at the edges; the packet path stays one synchronous loop)::

    sensor thread    the pipeline: live frames (LiveSource has a capture thread per interface) or a replay
    flush thread     every second: pending policy/anomaly aggregates out, tshark's flows into the
                     inventory, the store committed
    policy watcher   policy.reload.PolicyWatcher: a changed policy file is validated off the packet path
                     and swapped in; an invalid one is refused and the old one keeps running
    EVE follower     rules.eve_ingest.follow on Suricata's EVE file: its alerts join the alert stream
    deep scanner     sensor.deep.LiveDeepScan: dumpcap | tshark on the capture interfaces

The pipeline, the alert router, the store and the EVE writer are not thread-safe, so every touch of
them from another thread holds :attr:`LiveRunner.lock`. The sensor thread holds it while it processes a
frame and releases it while it waits for the next one, so an idle capture never blocks the API, a
status read or a Suricata alert.

Shutdown (:meth:`LiveRunner.stop`, on SIGTERM/SIGINT): stop capture → drain the queue → stop the
helpers (the follower's last lines, tshark's last flows absorbed) → flush flows and observers (the
baseline is saved) → commit and close the store; bounded by ``STOP_TIMEOUT`` so that ``serve`` stops
within 10 seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensor.capture.base import CaptureCounters, Source
from sensor.records import Alert, Frame

if TYPE_CHECKING:
    from policy.reload import PolicyWatcher
    from sensor.deep import LiveDeepScan
    from sensor.runtime import Sensor

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 7.0  # seconds for the sensor to drain, flush and commit after SIGTERM
FLUSH_INTERVAL = 1.0  # seconds between store commits of a live sensor
DEEP_INTERVAL = 2.0  # seconds between hand-overs of tshark's flows to the inventory
DEEP_NAME_WAIT = 30.0  # seconds (packet time) an ended, unclaimed flow waits for tshark's name
POLICY_INTERVAL = 2.0  # seconds between looks at the policy file
EVE_POLL = 0.25  # seconds the EVE follower sleeps at the end of the file
HELPER_JOIN = 2.0  # seconds a helper thread gets to finish at shutdown
REPLAY_LOCK_EVERY = 1024  # frames a replay processes between giving the lock to other threads


class LockedSource(Source):
    """Yields the inner source's frames while holding ``lock``: held while the consumer processes a
    frame, released while waiting for the next one.

    :meth:`close` (``Sensor.run_source`` calls it in its ``finally``) closes the generator: when
    processing a frame raises, the generator is suspended inside ``with self.lock`` and, while the
    exception's traceback keeps it alive (a log record, a retry), would keep the lock held.
    """

    def __init__(self, inner: Source, lock: threading.Lock) -> None:
        # Source.__init__ is not called: ``counters`` is the inner source's, read at each access (a
        # live source's is the sum of its interfaces' counters, a new object at each read).
        self.inner = inner
        self.lock = lock
        self.warnings = inner.warnings
        self._frames: Generator[Frame, None, None] | None = None

    @property
    def counters(self) -> CaptureCounters:
        return self.inner.counters

    @counters.setter
    def counters(self, value: CaptureCounters) -> None:
        raise AttributeError("a locked source counts with its inner source's counters")

    def frames(self) -> Iterator[Frame]:
        self._frames = self._locked_frames()
        return self._frames

    def _locked_frames(self) -> Generator[Frame, None, None]:
        for frame in self.inner.frames():
            with self.lock:
                yield frame

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # GeneratorExit at the yield: the lock is released here
        self.inner.close()


class _Stopped(Exception):
    pass


class LiveRunner:
    """Runs a sensor on live interfaces (``interface``) or over capture files (``paths``), in threads.

    ``interface``: one name, or several (a TAP's two monitor ports, SPAN sessions of several switches),
    captured together by one :class:`sensor.capture.live.LiveSource`; a name given twice is captured
    once. :attr:`interfaces` lists them; :attr:`interface` is them joined with "," (the string the
    status and summary documents have always carried under ``"interface"``), None for a replay.

    ``follow_eve``: tail this Suricata EVE file and publish its alerts as the sensor's own.
    ``deep``: identify other ICS protocols with tshark: live on the interface, or after a replay (the
    sensor's ``SensorConfig.deep`` file pass). ``watch_policy``: reload the sensor's policy file when it
    changes. With ``follow_eve`` a replay keeps the sensor open after its last file until :meth:`stop`,
    so that the followed alerts are still stored.
    """

    def __init__(
        self,
        sensor: Sensor,
        *,
        interface: str | Sequence[str] | None = None,
        bpf: str | None = None,
        paths: Sequence[Path] = (),
        flush_interval: float = FLUSH_INTERVAL,
        watch_policy: bool = True,
        policy_interval: float = POLICY_INTERVAL,
        follow_eve: Path | None = None,
        deep: bool = False,
        deep_interval: float = DEEP_INTERVAL,
    ) -> None:
        self.sensor = sensor
        names = [interface] if isinstance(interface, str) else list(interface or ())
        self._names_given = [name for name in names if name]  # LiveSource warns about a repeated one
        self.interfaces: list[str] = list(dict.fromkeys(self._names_given))
        self.interface: str | None = ",".join(self.interfaces) or None
        self.bpf = bpf
        self.paths = list(paths)
        self.flush_interval = flush_interval
        self.policy_interval = policy_interval
        self.follow_eve = follow_eve
        self.deep = deep
        self.deep_interval = deep_interval
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.source: Any = None  # sensor.capture.live.LiveSource while capturing
        self.error: str | None = None
        self.final_summary: dict[str, Any] | None = None
        # A policy.learn.TrafficCollector fed by the pipeline (POST /api/v1/policy/learn reads it).
        self.policy_collector: Any = None
        self.policy_watcher: PolicyWatcher | None = None
        self.deep_scan: LiveDeepScan | None = None
        self.eve_counters: dict[str, int] = {}
        self.eve_alerts_dropped = 0  # followed alerts that arrived after the store was closed
        self._closed = False  # set under the lock once the sensor finished: nothing may publish
        self._helpers_stop = threading.Event()
        self._helpers: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self._flusher: threading.Thread | None = None
        self._next_deep = 0.0
        policy = sensor.policy
        if policy is not None and sensor.config.policy_path is not None:
            from policy.reload import PolicyWatcher

            self.policy_watcher = PolicyWatcher(
                policy, sensor.config.policy_path, policy_interval, policy.policy.zones.asset_tags
            )
        self._watch_policy = watch_policy and self.policy_watcher is not None

    @property
    def mode(self) -> str:
        return "live" if self.interface else "replay"

    @property
    def holds_open(self) -> bool:
        """A replay that stays open after its files: something still feeds the sensor."""
        return self.interface is None and self.follow_eve is not None

    # --- running -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the capture (errors surface here, as CaptureError) and start the threads."""
        if self.interface:
            from sensor.capture.live import LiveSource

            self.source = LiveSource(self._names_given, self.bpf, self.sensor.config.limits)
            self.source.start()
            if self.deep:
                from sensor.deep import LiveDeepScan

                self.deep_scan = LiveDeepScan(self.interfaces, bpf=self.bpf, limits=self.sensor.config.limits)
                if self.deep_scan.start():
                    # The policy judges a flow no native dissector claims (S7comm-plus on tcp/102, DNP3...)
                    # as the protocol tshark has named it, as replay --deep does. A flow is judged when the
                    # native flow table ends it; one that ends before tshark's line naming it was read
                    # (tshark lags behind dumpcap's pipe) waits DEEP_NAME_WAIT seconds for it, and at
                    # stop tshark's last lines are read first. Only a flow tshark never names (it is down,
                    # or its table is full) is judged as "unknown" on its port.
                    self.sensor.judge_flows_as(self.deep_scan.flow_protocol, wait_for_names=DEEP_NAME_WAIT)
        if self.policy_watcher is not None and self._watch_policy:
            self.policy_watcher.start()
        if self.follow_eve is not None:
            self._helpers.append(
                threading.Thread(
                    # whether the file exists is decided now, not when the thread first runs: a file
                    # Suricata creates after the start must be read from its first line
                    target=self._follow_eve,
                    args=(self.follow_eve, not self.follow_eve.exists()),
                    name="eve-follow",
                    daemon=True,
                )
            )
        for helper in self._helpers:
            helper.start()
        self._thread = threading.Thread(target=self._run, name="sensor", daemon=True)
        self._thread.start()
        if self.interface or self.holds_open:
            self._flusher = threading.Thread(target=self._flush_loop, name="sensor-flush", daemon=True)
            self._flusher.start()

    def run(self, duration: float | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
        """Start, run until ``stop`` is set, ``duration`` seconds passed or the input ended, then stop;
        the final summary (``zonewarden sniff``)."""
        self.start()
        deadline = time.monotonic() + duration if duration else None
        stop = stop or threading.Event()
        while not self.finished.is_set() and not stop.wait(0.2):
            if deadline is not None and time.monotonic() >= deadline:
                break
        self.stop()
        return self.final_summary if self.final_summary is not None else self.summary()

    def _run(self) -> None:
        try:
            if self.source is not None:
                self.sensor.run_source(LockedSource(self.source, self.lock))
            else:
                self._replay()
                if self.holds_open:
                    with self.lock:  # the replay's flows end now, not at shutdown
                        self.sensor.pipeline.finish()
                    self.stopping.wait()
        except _Stopped:
            logger.info("replay stopped before the end of input")
        except Exception as exc:  # the API keeps serving what was stored; status shows the error
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("sensor failed")
        finally:
            self._stop_helpers()
            with self.lock:
                try:
                    self.final_summary = self.sensor.finish(self.paths, before_close=self._absorb_deep_all)
                    self.final_summary.update(self._capture_by_interface())
                    self.final_summary["live"] = self._live_section()
                except Exception as exc:
                    self.error = self.error or f"{type(exc).__name__}: {exc}"
                    logger.exception("sensor could not finish cleanly")
                finally:
                    self._closed = True
            self.finished.set()

    def _replay(self) -> None:
        self.sensor.identify_before_replay(self.paths)  # deep + policy: tshark first (finish reuses it)
        processed = 0

        def on_frame(frame: Frame) -> None:
            nonlocal processed
            processed += 1
            if processed % REPLAY_LOCK_EVERY == 0:
                self.lock.release()
                time.sleep(0)  # let a waiting status reader or publisher take the lock
                self.lock.acquire()
            if self.stopping.is_set():
                raise _Stopped

        for path in self.paths:
            if self.stopping.is_set():
                raise _Stopped
            with self.lock:
                report = self.sensor.replay_file(path, on_frame)
            if report.error:
                logger.error("%s", report.error)

    def _flush_loop(self) -> None:
        # The policy observer publishes its pending aggregated alerts (its flush is meant to be called
        # periodically on a live sensor), the anomaly observer the aggregates whose window has passed,
        # then the inventory commits them with the inventory and graph. Other observers' flush means
        # "end of input" and waits for the end.
        sensor = self.sensor
        periodic = [o for o in (sensor.policy, sensor.inventory) if o is not None]
        while not self.stopping.wait(self.flush_interval):
            if self.finished.is_set():
                return
            with self.lock:
                if self._closed:
                    return
                now = float(sensor.pipeline.now or time.time())
                try:
                    if sensor.anomaly is not None:
                        sensor.anomaly.tick(now)
                    if self.deep_scan is not None and time.monotonic() >= self._next_deep:
                        self._next_deep = time.monotonic() + self.deep_interval
                        self._absorb_deep()
                    for observer in periodic:
                        observer.flush(now)
                except Exception:
                    logger.exception("periodic store flush failed")

    # --- helpers -------------------------------------------------------------------------------------

    def publish(self, alert: Alert) -> None:
        """Publish an alert from another thread into the sensor's alert stream (store, EVE, outputs)."""
        with self.lock:
            if self._closed:
                self.eve_alerts_dropped += 1
                return
            self.sensor.alerts.publish(alert)

    def _follow_eve(self, path: Path, from_start: bool) -> None:
        from rules.eve_ingest import follow

        logger.info("following Suricata EVE file %s", path)
        try:
            stop = self._helpers_stop.is_set
            self.eve_counters = dict(follow(path, self.publish, stop, poll=EVE_POLL, from_start=from_start))
        except Exception:
            logger.exception("following %s failed", path)

    def _absorb_deep_all(self) -> None:
        # Every flow again at the end: a flow that ended since its last hand-over left a native edge.
        self._absorb_deep(everything=True)

    def _absorb_deep(self, everything: bool = False) -> None:
        """tshark's flows identified or grown since the last call into the inventory (lock held)."""
        scan = self.deep_scan
        if scan is None or self._closed:
            return
        flows = scan.changed_flows(everything)
        if flows:
            self.sensor.inventory.absorb_other_protocols(flows)
        self.sensor.other_protocols = scan.summary()

    def _stop_helpers(self) -> None:
        self._helpers_stop.set()
        if self.policy_watcher is not None:
            self.policy_watcher.stop()
        for helper in self._helpers:
            helper.join(HELPER_JOIN)
            if helper.is_alive():
                logger.warning("%s did not stop within %.0f s", helper.name, HELPER_JOIN)
        if self.deep_scan is not None:
            self.deep_scan.stop()

    def reload_policy(self) -> bool:
        """Install the policy file as it is now (``PUT /api/v1/policy`` has just written it): once, even
        when the watcher saw the change too; False when this sensor has no policy or the file is bad."""
        if self.policy_watcher is None:
            return False
        return self.policy_watcher.reload_now()

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop capture, drain, flush and commit; True when that finished within ``timeout``."""
        self.stopping.set()
        if self.source is not None:
            self.source.stop()
        if self._thread is None:  # never started
            self._stop_helpers()
            self.finished.set()
            return True
        done = self.finished.wait(timeout)
        if not done:
            logger.error("the sensor did not finish within %.0f s", timeout)
        return done

    # --- reading ---------------------------------------------------------------------------------------

    def _live_section(self) -> dict[str, Any]:
        watcher = self.policy_watcher
        out: dict[str, Any] = {"mode": self.mode, "interface": self.interface}
        if self.interfaces:
            out["interfaces"] = list(self.interfaces)
        if watcher is not None:
            out["policy"] = {
                "watched": self._watch_policy,
                "reloads": watcher.reloads,
                "refused": watcher.failures,
                "last_error": watcher.last_error,
            }
        if self.follow_eve is not None:
            out["eve_follow"] = {
                "path": str(self.follow_eve),
                **self.eve_counters,
                "dropped_after_stop": self.eve_alerts_dropped,
            }
        if self.deep_scan is not None:
            out["deep"] = self.deep_scan.counters()
        return out

    def _capture_by_interface(self) -> dict[str, Any]:
        """``{"capture_by_interface": {name: capture counters}}`` of a live capture, {} for a replay. Each
        interface's counters are written by its own capture thread only and read here as they are now:
        once capture stopped their sum is the summary's ``capture``; while it runs, the two are read a
        moment apart."""
        if self.source is None:
            return {}
        return {"capture_by_interface": self.source.counters_by_interface()}

    def summary(self) -> dict[str, Any]:
        """The sensor's summary now, with the runner's own section (lock taken, or {} when busy)."""
        if self.final_summary is not None:
            return self.final_summary
        if not self.lock.acquire(timeout=2.0):
            return {}
        try:
            summary = self.final_summary or {
                **self.sensor.summary(),
                **self._capture_by_interface(),
                "live": self._live_section(),
            }
        finally:
            self.lock.release()
        return summary

    def status(self) -> dict[str, Any]:
        """Live counters for ``GET /api/v1/status`` (``api.app.SensorHandle``)."""
        summary = self.summary()  # its capture counters include the live source's (Sensor.capture_counters)
        return {
            "sensor": {
                "running": not self.finished.is_set(),
                "mode": self.mode,
                "interface": self.interface,
                "interfaces": list(self.interfaces),
                "finished": self.finished.is_set(),
            },
            "summary": summary,
        }
