"""``zonewarden serve``: the API (uvicorn) and, when asked, a sensor writing to the same store.

Threads (DESIGN.md §1: concurrency lives at the edges)::

    main thread      signal handling; waits; on SIGTERM/SIGINT runs the shutdown below
    uvicorn thread   the API (its own event loop)
    sensor threads   sensor.live.LiveRunner, the same runner as ``zonewarden sniff``: the pipeline (live
                     frames or a replay), the periodic store commit, the policy file watcher, a followed
                     Suricata EVE file and tshark beside a live capture

The API reads the sensor through the runner: ``status()`` and the policy routes hold ``runner.lock``,
which the pipeline releases between frames, so an idle capture never blocks the API.

Shutdown order on SIGTERM: stop capture → drain the queue → flush flows and observers → commit the store
→ stop the API; the sensor part is bounded by ``STOP_TIMEOUT`` so the whole stays within 10 seconds.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from api.settings import Settings
from sensor.live import STOP_TIMEOUT, LiveRunner

logger = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds a client may take to send a whole request head (slowloris, A16)


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
    sniff: list[str] = field(default_factory=list)  # interfaces captured together (a TAP's two ports)
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
    learn_for: float | None = None  # anomaly detection: learn this many seconds of packet time first
    follow_eve: Path | None = None  # Suricata's EVE file: its alerts join the sensor's alert stream
    deep: bool = False  # identify other ICS protocols with tshark (live beside --sniff, after --replay)
    cert_expiry_days: int = 30  # cert:expiring_soon when a certificate in use expires within N days


def create_admin_token(db: Path, name: str) -> str:
    from api.auth import TokenStore
    from api.deps import connect
    from api.roles import Role

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
    runner: LiveRunner | None = None
    if options.sniff or options.replay:
        from policy.learn import TrafficCollector

        collector = TrafficCollector()  # what the policy would judge, for learning a policy through the API
        sensor = Sensor(
            SensorConfig(
                db_path=options.db,
                policy_path=options.policy,
                learn_for=options.learn_for,
                baseline_path=options.baseline,
                pki_dir=options.pki_dir,  # certificates seen judged against the served PKI
                cert_expiring_days=options.cert_expiry_days,
                deep=options.deep and not options.sniff,  # live: tshark beside the capture instead
            ),
            extra_sinks=[collector],
        )
        runner = LiveRunner(
            sensor,
            interface=options.sniff or None,
            bpf=options.bpf,
            paths=options.replay,
            follow_eve=options.follow_eve,
            deep=options.deep,
        )
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
