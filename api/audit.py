"""An append-only, hash-chained audit log in SQLite.

Every state change the project makes on behalf of a person (PKI operations now, the web API later) is
one row: who did what to which object, with what result, when. Rows are chained::

    +-----+----+-----+------+--------+--------+-----------+-------------------------------------+
    | seq | ts | who | what | object | result | prev_hash | hash = SHA-256(canonical JSON of    |
    |     |    |     |      |        |        |           |   [seq, ts, who, what, object,      |
    |     |    |     |      |        |        |           |    result, prev_hash])              |
    +-----+----+-----+------+--------+--------+-----------+-------------------------------------+

``seq`` starts at 1 and has no holes; the first ``prev_hash`` is 64 zeros. SQLite triggers refuse
UPDATE and DELETE on the table, so ordinary code cannot rewrite history; someone with raw access to the
file can drop the triggers, which is what :meth:`AuditLog.verify` is for: an edited row breaks its own
hash, a deleted row leaves a hole in ``seq`` and breaks the next row's ``prev_hash``. A deleted *tail*
(the newest rows) or a chain recomputed from scratch can only be caught against a copy of the head
kept elsewhere (syslog, a ticket): :meth:`AuditLog.head` gives it and ``verify(anchor=...)`` checks it.

The table is plain SQL (TEXT and INTEGER columns, no SQLite-only types) so the same schema can run on
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sqlite3
from dataclasses import dataclass

logger = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq       INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    who       TEXT NOT NULL,
    what      TEXT NOT NULL,
    object    TEXT NOT NULL,
    result    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL UNIQUE
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the audit log."""

    seq: int
    ts: str  # ISO 8601 UTC
    who: str
    what: str
    object: str
    result: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditProblem:
    """Something :meth:`AuditLog.verify` found wrong, at a sequence number."""

    seq: int
    kind: str  # "hash_mismatch" | "chain_broken" | "missing_records" | "anchor_mismatch"
    detail: str

    def __str__(self) -> str:
        return f"audit record {self.seq}: {self.kind}: {self.detail}"


def record_hash(seq: int, ts: str, who: str, what: str, obj: str, result: str, prev_hash: str) -> str:
    """SHA-256 of the canonical JSON array of the fields (UTF-8, no spaces, keys not involved)."""
    payload = json.dumps(
        [seq, ts, who, what, obj, result, prev_hash], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


class AuditLog:
    """The audit table on an open SQLite connection.

    The connection should be in autocommit mode (``isolation_level=None``) so transactions are explicit.
    :meth:`append` joins the caller's transaction when one is open (so the audit row commits or rolls
    back with the change it describes) and otherwise runs its own ``BEGIN IMMEDIATE`` ... ``COMMIT``.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(_SCHEMA)

    def append(self, who: str, what: str, obj: str, result: str, ts: str | None = None) -> AuditRecord:
        """Add one record at the end of the chain and return it."""
        own_transaction = not self.conn.in_transaction
        if own_transaction:
            # IMMEDIATE takes the write lock before reading the head, so two writers cannot both
            # chain onto the same previous record.
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev_hash = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
            stamp = ts if ts is not None else utc_now_iso()
            digest = record_hash(seq, stamp, who, what, obj, result, prev_hash)
            self.conn.execute(
                "INSERT INTO audit_log (seq, ts, who, what, object, result, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, stamp, who, what, obj, result, prev_hash, digest),
            )
            if own_transaction:
                self.conn.execute("COMMIT")
        except BaseException:
            if own_transaction and self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        return AuditRecord(seq, stamp, who, what, obj, result, prev_hash, digest)

    def records(self) -> list[AuditRecord]:
        rows = self.conn.execute(
            "SELECT seq, ts, who, what, object, result, prev_hash, hash FROM audit_log ORDER BY seq"
        ).fetchall()
        return [AuditRecord(*row) for row in rows]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest record, or (0, GENESIS_HASH) for an empty log: keep it elsewhere."""
        row = self.conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)

    def verify(self, anchor: tuple[int, str] | None = None) -> list[AuditProblem]:
        """Walk the chain; return every problem found (empty list = intact).

        ``anchor`` is a (seq, hash) recorded earlier outside this database: the record with that seq
        must still exist with that hash, which catches a deleted tail or a recomputed chain.
        """
        problems: list[AuditProblem] = []
        expected_seq = 1
        prev_hash = GENESIS_HASH
        by_seq: dict[int, str] = {}
        cursor = self.conn.execute(
            "SELECT seq, ts, who, what, object, result, prev_hash, hash FROM audit_log ORDER BY seq"
        )
        for row in cursor:
            rec = AuditRecord(*row)
            if rec.seq != expected_seq:
                problems.append(
                    AuditProblem(
                        rec.seq, "missing_records", f"records {expected_seq}..{rec.seq - 1} are gone"
                    )
                )
            if rec.prev_hash != prev_hash:
                problems.append(
                    AuditProblem(rec.seq, "chain_broken", "prev_hash does not match the previous record")
                )
            recomputed = record_hash(
                rec.seq, rec.ts, rec.who, rec.what, rec.object, rec.result, rec.prev_hash
            )
            if recomputed != rec.hash:
                problems.append(AuditProblem(rec.seq, "hash_mismatch", "record content was changed"))
            by_seq[rec.seq] = rec.hash
            expected_seq = rec.seq + 1
            prev_hash = rec.hash
        if anchor is not None and anchor[0] > 0:
            seq, digest = anchor
            if by_seq.get(seq) != digest:
                state = "missing" if seq not in by_seq else "different"
                problems.append(AuditProblem(seq, "anchor_mismatch", f"anchored record is {state}"))
        for problem in problems:
            logger.warning("%s", problem)
        return problems
