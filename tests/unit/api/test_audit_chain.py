"""api/audit.py: the hash chain finds an edited or deleted record."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from api.audit import GENESIS_HASH, AuditLog, record_hash


def _log(tmp_path: Path, records: int = 5) -> AuditLog:
    conn = sqlite3.connect(tmp_path / "audit.sqlite", isolation_level=None)
    log = AuditLog(conn)
    for i in range(records):
        log.append(f"user{i}", "pki.issue", f"serial:{i:x}", "ok", ts=f"2025-01-01T00:00:0{i}+00:00")
    return log


def _as_attacker(log: AuditLog, sql: str, *params: object) -> None:
    """Someone with raw access to the file: drop the append-only triggers first."""
    log.conn.execute("DROP TRIGGER audit_log_no_update")
    log.conn.execute("DROP TRIGGER audit_log_no_delete")
    log.conn.execute(sql, params)


def test_records_are_chained_from_genesis(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    records = log.records()
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS_HASH
    assert records[1].prev_hash == records[0].hash
    assert records[2].prev_hash == records[1].hash
    first = records[0]
    assert first.hash == record_hash(1, first.ts, "user0", "pki.issue", "serial:0", "ok", GENESIS_HASH)
    assert log.verify() == []
    assert log.head() == (3, records[2].hash)


def test_empty_log_verifies_and_has_genesis_head(tmp_path: Path) -> None:
    log = _log(tmp_path, 0)
    assert log.verify() == []
    assert log.head() == (0, GENESIS_HASH)


def test_triggers_refuse_update_and_delete(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.conn.execute("UPDATE audit_log SET result = 'refused' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        log.conn.execute("DELETE FROM audit_log WHERE seq = 2")
    assert log.verify() == []


@pytest.mark.parametrize("column", ["ts", "who", "what", "object", "result"])
def test_edited_record_is_found(tmp_path: Path, column: str) -> None:
    log = _log(tmp_path)
    _as_attacker(log, f"UPDATE audit_log SET {column} = 'forged' WHERE seq = 3")
    problems = log.verify()
    assert [(p.seq, p.kind) for p in problems] == [(3, "hash_mismatch")]


def test_edit_with_recomputed_own_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = _log(tmp_path)
    rec = log.records()[1]
    forged = record_hash(rec.seq, rec.ts, "mallory", rec.what, rec.object, rec.result, rec.prev_hash)
    _as_attacker(log, "UPDATE audit_log SET who = 'mallory', hash = ? WHERE seq = 2", forged)
    problems = log.verify()
    assert [(p.seq, p.kind) for p in problems] == [(3, "chain_broken")]


def test_deleted_middle_record_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _as_attacker(log, "DELETE FROM audit_log WHERE seq = 2")
    kinds = {(p.seq, p.kind) for p in log.verify()}
    assert kinds == {(3, "missing_records"), (3, "chain_broken")}


def test_deleted_first_record_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _as_attacker(log, "DELETE FROM audit_log WHERE seq = 1")
    assert {p.kind for p in log.verify()} == {"missing_records", "chain_broken"}


def test_deleted_tail_is_found_against_an_anchor(tmp_path: Path) -> None:
    log = _log(tmp_path)
    anchor = log.head()
    _as_attacker(log, "DELETE FROM audit_log WHERE seq = 5")
    assert [(p.seq, p.kind) for p in log.verify(anchor=anchor)] == [(5, "anchor_mismatch")]


def test_fully_rewritten_chain_is_found_against_an_anchor(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    anchor = log.head()
    _as_attacker(log, "DELETE FROM audit_log")
    log.conn.executescript(
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'x'); END;"
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'x'); END;"
    )
    for i in range(3):
        log.append("mallory", "pki.issue", f"serial:{i:x}", "ok")
    assert log.verify() == []  # self-consistent: only an anchor kept elsewhere can tell
    assert [p.kind for p in log.verify(anchor=anchor)] == ["anchor_mismatch"]


def test_append_joins_the_callers_transaction(tmp_path: Path) -> None:
    log = _log(tmp_path, 1)
    log.conn.execute("BEGIN IMMEDIATE")
    log.append("u", "pki.revoke", "serial:1", "ok")
    log.conn.execute("ROLLBACK")
    assert len(log.records()) == 1
    log.conn.execute("BEGIN IMMEDIATE")
    log.append("u", "pki.revoke", "serial:1", "ok")
    log.conn.execute("COMMIT")
    assert len(log.records()) == 2
    assert log.verify() == []


def test_chain_survives_reopening(tmp_path: Path) -> None:
    _log(tmp_path, 2).conn.close()
    reopened = AuditLog(sqlite3.connect(tmp_path / "audit.sqlite", isolation_level=None))
    reopened.append("u", "pki.crl", "issuer", "ok")
    assert [r.seq for r in reopened.records()] == [1, 2, 3]
    assert reopened.verify() == []


def test_non_ascii_fields_hash_stably(tmp_path: Path) -> None:
    log = _log(tmp_path, 0)
    log.append("opérateur", "pki.issue", "CN=Pumpe 3 \u2013 Halle Ü", "ok")
    assert log.verify() == []
