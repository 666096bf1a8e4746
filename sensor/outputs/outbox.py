"""The on-disk outbox: alerts waiting for a sink, in SQLite, so delivery survives a crash.

One row per (sink, alert id): an alert submitted twice for the same sink (a replay after a crash,
an upsert with a higher count) is queued once (delivered rows are remembered, without their payload,
up to ``max_rows``), and the sink is handed the alert id as its
idempotency key, so the receiver can drop the duplicates at-least-once delivery may still make.

The outbox is capped: past ``max_rows`` the oldest waiting rows are dropped and counted
(``dropped``), so a dead sink makes the file grow to a known size and no further. Rows a sink
refused for good (e.g. HTTP 400) are kept as ``dead`` for an operator to look at, not retried.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'waiting',
    last_error TEXT NOT NULL DEFAULT '',
    UNIQUE (sink, alert_id)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sink, state, next_attempt, seq);
CREATE TABLE IF NOT EXISTS outbox_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    sink: str
    alert_id: str
    payload: str
    attempts: int


class Outbox:
    """Thread-safe (one lock around one connection): the sensor thread puts, the delivery thread takes."""

    def __init__(self, path: Path | str, max_rows: int = 100_000) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        # alerts are durable: a commit reaches the disk before put() returns
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA busy_timeout = 10000")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _bump(self, name: str, n: int) -> None:
        self._conn.execute(
            "INSERT INTO outbox_counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def put_many(self, items: list[tuple[str, str, str]], now: float | None = None) -> int:
        """Queue (sink, alert_id, payload) rows in one transaction; returns how many were new."""
        if not items:
            return 0
        created = time.time() if now is None else now
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT INTO outbox (sink, alert_id, payload, created) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (sink, alert_id) DO NOTHING",
                    [(s, a, p, created) for s, a, p in items],
                )
                added = self._conn.total_changes - before
                waiting = self._conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'waiting'"
                ).fetchone()[0]
                excess = int(waiting) - self.max_rows
                if excess > 0:
                    self._conn.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state = 'waiting'"
                        " ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                    self._bump("dropped", excess)
                if added:
                    self._bump("queued", added)
                done = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'").fetchone()[
                    0
                ]
                if int(done) > self.max_rows:
                    self._conn.execute(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state = 'delivered'"
                        " ORDER BY seq LIMIT ?)",
                        (int(done) - self.max_rows,),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return int(added)

    def due(self, sink: str, now: float, limit: int = 100) -> list[OutboxRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, sink, alert_id, payload, attempts FROM outbox"
                " WHERE sink = ? AND state = 'waiting' AND next_attempt <= ? ORDER BY seq LIMIT ?",
                (sink, now, limit),
            ).fetchall()
        return [OutboxRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]

    def next_due(self, sink: str) -> float | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE sink = ? AND state = 'waiting'", (sink,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            # kept (payload dropped) so a re-submitted alert is recognised and not sent again
            self._conn.executemany(
                "UPDATE outbox SET state = 'delivered', payload = '' WHERE seq = ?", [(s,) for s in seqs]
            )
            self._bump("delivered", len(seqs))
            self._conn.execute("COMMIT")

    def retry(self, seq: int, next_attempt: float, error: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE seq = ?",
                (next_attempt, error[:500], seq),
            )

    def dead(self, seq: int, error: str) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, state = 'dead', last_error = ? WHERE seq = ?",
                (error[:500], seq),
            )
            self._bump("dead", 1)

    def pending(self, sink: str | None = None) -> int:
        with self._lock:
            if sink is None:
                row = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'waiting'").fetchone()
            else:
                row = self._conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'waiting' AND sink = ?", (sink,)
                ).fetchone()
        return int(row[0])

    def counters(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT name, value FROM outbox_counters").fetchall()
            waiting = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'waiting'").fetchone()[0]
        out = {str(name): int(value) for name, value in rows}
        out["waiting"] = int(waiting)
        for key in ("queued", "delivered", "dropped", "dead"):
            out.setdefault(key, 0)
        return dict(sorted(out.items()))
