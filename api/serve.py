"""``zonewarden serve``: the API (uvicorn) and, when asked, a sensor writing to the same store.

Threads (DESIGN.md §1: concurrency lives at the edges)::

    main thread      signal handling; waits; on SIGTERM/SIGINT runs the shutdown below
    uvicorn thread   the API (its own event loop)
    sensor thread    the pipeline: live frames (LiveSource has its own capture thread) or a replay
    flush thread     every second: commit the inventory/graph/alerts of a live sensor to the store

The pipeline is single-threaded by design, so every touch of it from another thread (the periodic
flush, a status read) holds ``SensorRunner.lock``; the pipeline holds it while it processes a frame and
releases it while it waits for the next one, so an idle capture never blocks the API.

Shutdown order on SIGTERM: stop capture → drain the queue → flush flows and observers → commit the store
→ stop the API; the sensor part is bounded by ``STOP_TIMEOUT`` so the whole stays within 10 seconds.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from api.settings import Settings
from sensor.capture.base import Source
from sensor.records import Frame

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 7.0  # seconds for the sensor to drain, flush and commit after SIGTERM
FLUSH_INTERVAL = 1.0
REPLAY_LOCK_EVERY = 1024  # frames a replay processes between giving the lock to status readers
HEADER_TIMEOUT = 10.0  # seconds a client may take to send a whole request head (slowloris, A16)


class _LockedSource(Source):
    """Yields the inner source's frames while holding ``lock``: held while the consumer processes a
    frame, released while waiting for the next one."""

    def __init__(self, inner: Source, lock: threading.Lock) -> None:
        super().__init__()
        self.inner = inner
        self.lock = lock
        self.counters = inner.counters
        self.warnings = inner.warnings

    def frames(self) -> Iterator[Frame]:
        for frame in self.inner.frames():
            with self.lock:
                yield frame

    def close(self) -> None:
        self.inner.close()


class _Stopped(Exception):
    pass


class SensorRunner:
    """Runs a :class:`sensor.runtime.Sensor` on a live interface or over capture files, in a thread."""

    def __init__(
        self,
        sensor: Any,
        *,
        interface: str | None = None,
        bpf: str | None = None,
        paths: Sequence[Path] = (),
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.sensor = sensor
        self.interface = interface
        self.bpf = bpf
        self.paths = list(paths)
        self.flush_interval = flush_interval
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.source: Any = None
        self.error: str | None = None
        self.final_summary: dict[str, Any] | None = None
        # A policy.learn.TrafficCollector fed by the pipeline (POST /api/v1/policy/learn reads it).
        self.policy_collector: Any = None
        self._thread: threading.Thread | None = None
        self._flusher: threading.Thread | None = None

    @property
    def mode(self) -> str:
        return "live" if self.interface else "replay"

    def start(self) -> None:
        """Open the capture (errors surface here, before the API starts) and start the threads."""
        if self.interface:
            from sensor.capture.live import LiveSource

            self.source = LiveSource(self.interface, self.bpf, self.sensor.config.limits)
            self.source.start()
        self._thread = threading.Thread(target=self._run, name="sensor", daemon=True)
        self._thread.start()
        if self.interface:
            self._flusher = threading.Thread(target=self._flush_loop, name="sensor-flush", daemon=True)
            self._flusher.start()

    def _run(self) -> None:
        try:
            if self.source is not None:
                self.sensor.run_source(_LockedSource(self.source, self.lock))
            else:
                self._replay()
        except _Stopped:
            logger.info("replay stopped before the end of input")
        except Exception as exc:  # the API keeps serving what was stored; status shows the error
            self.error = f"{type(exc).__name__}: {exc}"
            logger.exception("sensor failed")
        finally:
            with self.lock:
                try:
                    self.final_summary = self.sensor.finish(self.paths)
                except Exception as exc:
                    self.error = self.error or f"{type(exc).__name__}: {exc}"
                    logger.exception("sensor could not finish cleanly")
            self.finished.set()

    def _replay(self) -> None:
        processed = 0

        def on_frame(frame: Frame) -> None:
            nonlocal processed
            processed += 1
            if processed % REPLAY_LOCK_EVERY == 0:
                self.lock.release()
                time.sleep(0)  # let a waiting status reader take the lock
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
        # periodically on a live sensor), then the inventory commits them with the inventory and graph.
        # Other observers' flush means "end of input" (e.g. baseline learning) and waits for the end.
        periodic = [
            o for o in (getattr(self.sensor, "policy", None), getattr(self.sensor, "inventory", None)) if o
        ]
        while not self.stopping.wait(self.flush_interval):
            if self.finished.is_set() or not periodic:
                return
            with self.lock:
                if not self.finished.is_set():
                    now = float(self.sensor.pipeline.now or time.time())
                    try:
                        for observer in periodic:
                            observer.flush(now)
                    except Exception:
                        logger.exception("periodic store flush failed")

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop capture, drain, flush and commit; True when that finished within ``timeout``."""
        self.stopping.set()
        if self.source is not None:
            self.source.stop()
        done = self.finished.wait(timeout)
        if not done:
            logger.error("the sensor did not finish within %.0f s", timeout)
        return done

    def status(self) -> dict[str, Any]:
        """Live counters for ``GET /api/v1/status`` (``api.app.SensorHandle``)."""
        summary: dict[str, Any] | None = self.final_summary
        if summary is None:
            if self.lock.acquire(timeout=2.0):
                try:
                    summary = self.final_summary or self.sensor.summary()
                finally:
                    self.lock.release()
            else:
                summary = {}
        if self.source is not None and not self.finished.is_set():
            # Capture counters reach the summary when the source closes; while live, read them directly.
            summary = {**summary, "capture": self.source.counters.as_dict()}
        return {
            "sensor": {
                "running": not self.finished.is_set(),
                "mode": self.mode,
                "interface": self.interface,
                "finished": self.finished.is_set(),
            },
            "summary": summary,
        }


def header_deadline_protocol(timeout: float) -> type:
    """uvicorn's h11 protocol with a deadline on receiving a request head (A16).

    uvicorn's keep-alive timeout only starts after a first response and is reset by every byte, so a
    client sending one byte a second (slowloris) would hold its connection, and a concurrency slot,
    forever. This closes a connection that has not completed a request head within ``timeout`` seconds
    of connecting or of its previous response.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineH11Protocol(H11Protocol):
        _deadline: Any = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout, self._on_deadline)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _on_deadline(self) -> None:
            self._deadline = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineH11Protocol


@dataclass
class ServeOptions:
    db: Path
    host: str = "127.0.0.1"
    port: int = 8000
    sniff: str | None = None
    bpf: str | None = None
    replay: list[Path] = field(default_factory=list)
    policy: Path | None = None
    baseline: Path | None = None
    rules_dir: Path | None = None
    rules_data_dir: Path | None = None
    pki_dir: Path | None = None
    pki_passphrase_file: Path | None = None
    timeout_keep_alive: int = 5
    limit_concurrency: int = 200
    header_timeout: float = HEADER_TIMEOUT
    print_admin_token: bool = False
    auth_failures_allowed: int = 10


def create_admin_token(db: Path, name: str) -> str:
    from api.auth import Role, TokenStore
    from api.deps import connect

    conn = connect(db)
    try:
        TokenStore.create_schema(conn)
        from api.audit import AuditLog

        record, token = TokenStore(conn).create(Role.ADMIN, name, "cli:serve")
        AuditLog(conn).append(
            "cli:serve", "tokens.create", f"token:{record.id}", f"ok: role=admin name={name}"
        )
    finally:
        conn.close()
    return token


def serve(options: ServeOptions, ready: Callable[[str], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    import uvicorn

    from api.app import create_app
    from sensor.runtime import Sensor, SensorConfig
    from sensor.store.sqlite import Store

    options.db.parent.mkdir(parents=True, exist_ok=True)
    Store(options.db).close()  # schema in place before the API reads it
    runner: SensorRunner | None = None
    if options.sniff or options.replay:
        from policy.learn import TrafficCollector

        collector = TrafficCollector()  # what the policy would judge, for learning a policy through the API
        sensor = Sensor(
            SensorConfig(
                db_path=options.db,
                policy_path=options.policy,
                baseline_path=options.baseline,
                pki_dir=options.pki_dir,  # certificates seen judged against the served PKI
            ),
            extra_sinks=[collector],
        )
        runner = SensorRunner(sensor, interface=options.sniff, bpf=options.bpf, paths=options.replay)
        runner.policy_collector = collector
    settings = Settings(
        db_path=options.db,
        pki_dir=options.pki_dir,
        pki_passphrase_file=options.pki_passphrase_file,
        policy_path=options.policy,
        baseline_path=options.baseline,
        rules_dir=options.rules_dir,
        rules_data_dir=options.rules_data_dir,
        auth_failures_allowed=options.auth_failures_allowed,
    )
    app = create_app(settings, runner)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        http=header_deadline_protocol(options.header_timeout),
        timeout_keep_alive=options.timeout_keep_alive,
        limit_concurrency=options.limit_concurrency,
        timeout_graceful_shutdown=2,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if runner is not None:
            runner.start()
        api_thread = threading.Thread(target=server.run, name="api", daemon=True)
        api_thread.start()
        while not server.started and api_thread.is_alive() and not stop.is_set():
            time.sleep(0.05)
        if not server.started:
            stop.set()
            if runner is not None:
                runner.stop()
            print(f"zonewarden: error: cannot serve on {options.host}:{options.port}", file=sys.stderr)
            return 1
        url = f"http://{options.host}:{options.port}/"
        print(f"zonewarden: serving on {url}", file=sys.stderr, flush=True)
        if options.print_admin_token:
            token = create_admin_token(options.db, "serve --print-admin-token")
            print(f"URL:   {url}\nToken: {token}", flush=True)
        if ready is not None:
            ready(url)
        while not stop.wait(0.25):
            if not api_thread.is_alive():
                break
        started = time.monotonic()
        if runner is not None:
            runner.stop(STOP_TIMEOUT)
        server.should_exit = True
        api_thread.join(timeout=max(0.5, 9.5 - (time.monotonic() - started)))
        logger.info("stopped in %.1f s", time.monotonic() - started)
        return 0 if runner is None or runner.error is None else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
