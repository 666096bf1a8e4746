"""DESIGN.md §6: the store's schema must also run on PostgreSQL, for a central deployment.

Every migration is applied, in order, to a throwaway PostgreSQL cluster (Debian's postgresql, started by
the test in a temporary directory on a Unix socket only), then the upserts the store relies on are run.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.store.sqlite import migrations

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
pytestmark = pytest.mark.skipif(
    not INITDB or shutil.which("psql") is None or os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="needs root, runuser, psql and Debian's postgresql server (make test installs it)",
)


@pytest.fixture
def postgres() -> Iterator[Path]:
    bin_dir = Path(INITDB[-1]).parent
    # the server runs as user postgres, which cannot enter pytest's private tmp_path
    home = Path(tempfile.mkdtemp(prefix="zw-postgres-"))
    shutil.chown(home, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(home / "data"), "-A", "trust", "-U",
                    "postgres"], check=True, capture_output=True, timeout=120)  # fmt: skip
    ctl = [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(home / "data"), "-w", "-l", str(home / "log")]
    options = f"-k {home} -c listen_addresses=''"
    subprocess.run([*ctl, "-o", options, "start"], check=True, capture_output=True, timeout=120)
    try:
        yield home
    finally:
        subprocess.run([*ctl, "stop", "-m", "fast"], capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def psql(socket_dir: Path, sql: str) -> str:
    done = subprocess.run(
        ["psql", "-h", str(socket_dir), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_migration_applies_on_postgresql_and_the_upserts_run(postgres: Path) -> None:
    for _version, _name, sql in migrations():
        psql(postgres, sql)
    tables = set(psql(postgres, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
    assert {"assets", "edges", "alerts", "absorbed_flows", "counters", "asset_labels"} <= tables
    # the conflict clauses the store writes with (sensor/store/sqlite.py Store.save)
    upsert = (
        "INSERT INTO counters (name, value) VALUES ('packets', 5)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
    )
    psql(postgres, upsert)
    psql(postgres, upsert.replace("5", "7"))
    assert psql(postgres, "SELECT value FROM counters WHERE name = 'packets'").strip() == "7"
    once = "INSERT INTO absorbed_flows (flow_id, edge_id, ts) VALUES (1, 'e', 1.5)"
    psql(postgres, once + " ON CONFLICT (flow_id) DO NOTHING")
    psql(postgres, once + " ON CONFLICT (flow_id) DO NOTHING")
    assert psql(postgres, "SELECT COUNT(*) FROM absorbed_flows").strip() == "1"
