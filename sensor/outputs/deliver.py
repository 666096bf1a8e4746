"""Alert delivery: from the durable store to the SOC's sinks, without ever slowing the sensor.

Order of events for one alert (DESIGN.md §5, §6):

1. the alert is committed to the store (SQLite, ``synchronous=FULL``) by the store's sink;
2. :meth:`Deliverer.submit` (registered after the store in the ``AlertRouter``) writes one outbox
   row per configured sink - one small SQLite transaction, no network;
3. a background thread takes due rows per sink and sends them: EVE file, syslog, webhook. Success
   marks the row delivered; a failure schedules a retry with exponential backoff
   (``retry_base * 2**attempts``, capped at ``retry_max``); a permanent refusal (HTTP 4xx) marks it
   dead. A sink that is slow or down only delays its own rows: the outbox grows up to its cap
   (oldest dropped, counted) and the packet path never waits on the network.

Delivery is at-least-once: a crash between a send and its acknowledgement re-sends the alert after
restart, with the same alert id as idempotency key so the receiver can drop it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from sensor.config import OutputsConfig, SinkConfig
from sensor.outputs.eve import dumps, eve_record
from sensor.outputs.outbox import Outbox
from sensor.outputs.syslog import SyslogSink
from sensor.outputs.webhook import OK, REJECTED, WebhookSink
from sensor.records import Alert

log = logging.getLogger(__name__)

SENT = "sent"
FAILED = "failed"
DEAD = "dead"


class Sink(Protocol):
    name: str

    def deliver(self, record: dict[str, Any], alert_id: str) -> tuple[str, str]: ...

    def close(self) -> None: ...


class EveFileSink:
    """Alerts appended as EVE JSON lines to a file (flushed after each batch)."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = Path(path)
        self._fh: IO[str] | None = None

    def deliver(self, record: dict[str, Any], alert_id: str) -> tuple[str, str]:
        try:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._fh.write(dumps(record) + "\n")
            self._fh.flush()
        except OSError as exc:
            self.close()
            return FAILED, str(exc)
        return SENT, ""

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class SyslogAdapter:
    def __init__(self, sink: SyslogSink) -> None:
        self.sink = sink
        self.name = sink.name

    def deliver(self, record: dict[str, Any], alert_id: str) -> tuple[str, str]:
        ts = float(record.get("zonewarden", {}).get("ts", 0) or time.time())
        try:
            self.sink.send(record, alert_id, ts)
        except OSError as exc:
            return FAILED, str(exc)
        return SENT, ""

    def close(self) -> None:
        self.sink.close()


class WebhookAdapter:
    def __init__(self, sink: WebhookSink) -> None:
        self.sink = sink
        self.name = sink.name

    def deliver(self, record: dict[str, Any], alert_id: str) -> tuple[str, str]:
        outcome, detail = self.sink.post(record, alert_id)
        if outcome == OK:
            return SENT, detail
        return (DEAD if outcome == REJECTED else FAILED), detail

    def close(self) -> None:
        self.sink.close()


def build_sink(cfg: SinkConfig) -> Sink:
    if cfg.type == "eve":
        return EveFileSink(cfg.name, cfg.path)
    if cfg.type == "syslog":
        return SyslogAdapter(
            SyslogSink(cfg.name, cfg.url, cfg.format, cfg.facility, ca_file=cfg.ca_file, timeout=cfg.timeout)
        )
    return WebhookAdapter(WebhookSink(cfg.name, cfg.url, cfg.secret, cfg.timeout))


def alert_payload(alert: Alert) -> dict[str, Any]:
    record = eve_record(alert)
    record.setdefault("zonewarden", {})["ts"] = alert.ts
    return record


class Deliverer:
    """Outbox writer (caller's thread) and sender (its own thread). ``submit`` never blocks on a sink."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        outbox: Outbox,
        retry_base: float = 1.0,
        retry_max: float = 300.0,
        batch: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sinks = {s.name: s for s in sinks}
        self.outbox = outbox
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.batch = batch
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._final_outbox: dict[str, int] | None = None

    @classmethod
    def from_config(cls, cfg: OutputsConfig) -> Deliverer:
        return cls(
            [build_sink(s) for s in cfg.sinks],
            Outbox(cfg.outbox, cfg.outbox_max),
            retry_base=cfg.retry_base,
            retry_max=cfg.retry_max,
        )

    # --- the sensor side ---------------------------------------------------------------------

    def submit(self, alert: Alert) -> None:
        """Queue an alert (already committed to the store) for every sink."""
        self.submit_many([alert])

    def submit_many(self, alerts: Sequence[Alert]) -> None:
        rows: list[tuple[str, str, str]] = []
        for alert in alerts:
            payload = json.dumps(alert_payload(alert), separators=(",", ":"), ensure_ascii=False, default=str)
            rows.extend((name, alert.alert_id, payload) for name in self.sinks)
        added = self.outbox.put_many(rows)
        with self._lock:
            self.counters["submitted"] += len(alerts)
            self.counters["queued"] += added
        self._wake.set()

    def handle(self, event: Any) -> None:
        """Alert-sink interface (``AlertRouter.sinks``); register it after the store."""
        if isinstance(event, Alert):
            self.submit(event)

    # --- the sending side ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zonewarden-deliver", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.run_once()
            self._wake.wait(timeout=wait)
            self._wake.clear()

    def run_once(self) -> float:
        """Send every due row once; returns how long the thread may sleep before the next is due."""
        now = self.clock()
        next_wait = 1.0
        for name, sink in self.sinks.items():
            for row in self.outbox.due(name, now, self.batch):
                if self._stop.is_set() and not self._draining:
                    return 0.0
                try:
                    outcome, detail = sink.deliver(json.loads(row.payload), row.alert_id)
                except Exception as exc:  # a sink bug must not kill the delivery thread
                    log.exception("sink %s failed", name)
                    outcome, detail = FAILED, repr(exc)
                if outcome == SENT:
                    self.outbox.delivered([row.seq])
                    self._count(f"delivered.{name}")
                elif outcome == DEAD:
                    self.outbox.dead(row.seq, detail)
                    self._count(f"rejected.{name}")
                    log.warning("sink %s refused alert %s for good: %s", name, row.alert_id, detail)
                else:
                    delay = min(self.retry_max, self.retry_base * (2 ** min(row.attempts, 30)))
                    self.outbox.retry(row.seq, now + delay, detail)
                    self._count(f"retries.{name}")
                    log.info("sink %s: %s; alert %s retried in %.1f s", name, detail, row.alert_id, delay)
                    break  # the sink is failing: leave its other rows for later, keep order
            due = self.outbox.next_due(name)
            if due is not None:
                next_wait = min(next_wait, max(0.0, due - self.clock()))
        return max(next_wait, 0.01)

    _draining = False

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    def close(self, drain_timeout: float = 5.0) -> None:
        """Stop the thread, first trying for up to ``drain_timeout`` s to send what is waiting."""
        deadline = time.monotonic() + drain_timeout
        if self._thread is not None:
            self._draining = True
            while self.outbox.pending() and time.monotonic() < deadline:
                self._wake.set()
                time.sleep(0.02)
            self._draining = False
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=max(0.1, deadline - time.monotonic()) + 5)
            self._thread = None
        for sink in self.sinks.values():
            sink.close()
        self._final_outbox = self.outbox.counters()
        self.outbox.close()

    def section(self) -> dict[str, Any]:
        with self._lock:
            counters = dict(sorted(self.counters.items()))
        outbox = self._final_outbox if self._final_outbox is not None else self.outbox.counters()
        return {"sinks": sorted(self.sinks), "counters": counters, "outbox": outbox}
