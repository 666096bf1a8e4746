"""``kill -9`` in the middle of ``zonewarden replay --db``, then the same command again: nothing that was
committed is lost, nothing is counted twice, and the result equals one uninterrupted run."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from zw_paths import REPO
from zw_store_captures import write_many_modbus_flows

FLOWS = 12_000


def _absorbed_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM absorbed_flows").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created or migrated yet


def _state(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {
            "assets": conn.execute(
                "SELECT ip, mac, roles, protocols, detail FROM assets ORDER BY ip"
            ).fetchall(),
            "edges": conn.execute("SELECT * FROM edges ORDER BY edge_id").fetchall(),
            "flows": conn.execute(
                "SELECT flow_id, edge_id, ts FROM absorbed_flows ORDER BY flow_id"
            ).fetchall(),
            "roles": conn.execute("SELECT * FROM asset_roles ORDER BY ip, role").fetchall(),
        }
    finally:
        conn.close()


def _replay(pcap: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "sensor.cli", "replay", "-q", str(pcap), "--db", str(db)]


def test_store_kill_9_mid_replay_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    pcap = tmp_path / "many-flows.pcap"
    write_many_modbus_flows(pcap, FLOWS)
    crashed, clean = tmp_path / "crashed.db", tmp_path / "clean.db"

    proc = subprocess.Popen(
        _replay(pcap, crashed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and _absorbed_count(crashed) < 300:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _out, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"replay ended before it was killed: {err.decode()[-2000:]}"

    committed = _state(crashed)
    assert 300 <= len(committed["flows"]) < FLOWS  # killed mid-run, with batches committed

    rerun = subprocess.run(_replay(pcap, crashed), cwd=REPO, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    once = subprocess.run(_replay(pcap, clean), cwd=REPO, capture_output=True, timeout=300)
    assert once.returncode == 0, once.stderr.decode()[-2000:]

    after, expected = _state(crashed), _state(clean)
    assert set(committed["flows"]) <= set(after["flows"])  # nothing committed was lost
    assert len(after["flows"]) == FLOWS  # every flow absorbed exactly once
    assert after == expected  # same counters, assets and roles as one uninterrupted run
    packets = sum(int(row[6]) for row in after["edges"])  # type: ignore[call-overload]
    assert packets == FLOWS * 8
