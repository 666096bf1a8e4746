"""SQLite store: migrations, portable schema, accumulation over runs, idempotent replays, alerts."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from zw_paths import PCAPS
from zw_reach import plant_captures

from sensor.errors import UserError
from sensor.records import Alert, FlowRef
from sensor.runtime import SensorConfig, replay
from sensor.store.sqlite import Store, default_db_path, migrations, split_statements


def run(db: Path, *pcaps: Path) -> dict:  # type: ignore[type-arg]
    summary, reports = replay(list(pcaps), SensorConfig(db_path=db))
    assert all(r.error is None for r in reports)
    return summary


def snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {
            "assets": conn.execute(
                "SELECT ip, mac, name, roles, protocols, detail FROM assets ORDER BY ip"
            ).fetchall(),
            "edges": conn.execute("SELECT * FROM edges ORDER BY edge_id").fetchall(),
            "flows": conn.execute("SELECT flow_id, edge_id FROM absorbed_flows ORDER BY flow_id").fetchall(),
            "alerts": conn.execute("SELECT alert_id, count FROM alerts ORDER BY alert_id").fetchall(),
            "roles": conn.execute("SELECT * FROM asset_roles ORDER BY ip, role").fetchall(),
        }
    finally:
        conn.close()


def test_store_migrations_are_versioned_and_applied_once(tmp_path: Path) -> None:
    versions = [v for v, _name, _sql in migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    store = Store(tmp_path / "z.db")
    assert store.schema_version() == versions[-1]
    assert store.migrate() == versions[-1]  # again: nothing to do
    rows = store.conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows == [(v, n) for v, n, _ in migrations()]
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_store_schema_uses_only_portable_sql() -> None:
    """DESIGN.md §6: the same schema must run on PostgreSQL."""
    for _version, _name, sql in migrations():
        for statement in split_statements(sql):
            upper = statement.upper()
            for sqlite_only in (
                "AUTOINCREMENT",
                "WITHOUT ROWID",
                "PRAGMA",
                "STRICT",
                "INSERT OR",
                "DATETIME(",
            ):
                assert sqlite_only not in upper, statement
            # standard SQL both engines run: tables, indexes, a column added, a seed row
            assert re.match(
                r"^(CREATE (TABLE|INDEX) |ALTER TABLE \w+ ADD COLUMN |INSERT INTO )", statement
            ), statement
            for column_type in re.findall(r"^\s+(?!PRIMARY)\w+\s+([A-Z]+)", statement, re.M):
                assert column_type in {"VARCHAR", "TEXT", "INTEGER", "BIGINT", "DOUBLE"}, column_type


def test_store_default_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZONEWARDEN_DATA", str(tmp_path))
    assert default_db_path() == tmp_path / "zonewarden.db"
    monkeypatch.delenv("ZONEWARDEN_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_db_path() == tmp_path / ".local/share/zonewarden/zonewarden.db"


def test_store_readonly_refuses_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such database"):
        Store(tmp_path / "absent.db", readonly=True)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="not a zonewarden database"):
        Store(junk)


def test_store_two_replays_accumulate_one_picture(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    first = run(db, PCAPS / "modbus-pymodbus-polling.pcap")
    second = run(db, PCAPS / "opcua-asyncua-none.pcap")
    assert first["roles"].get("opcua_server") is None
    assert second["roles"]["opcua_server"] == ["127.0.0.1"]
    assert second["roles"]["modbus_server"] == ["127.0.0.1"]  # remembered from the first run
    store = Store(db, readonly=True)
    protocols = {e["protocol"] for e in store.list_edges()}
    asset = store.get_asset("127.0.0.1")
    store.close()
    assert {"modbus", "opcua"} <= protocols
    assert asset is not None and {"modbus", "opcua"} <= set(asset["protocols"])
    assert second["edges"] == len(protocols)


def test_store_same_capture_twice_duplicates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    pcaps = [PCAPS / "modbus-pymodbus-writes-exceptions.pcap", PCAPS / "mqtt-v311-mosquitto.pcap"]
    first = run(db, *pcaps)
    once = snapshot(db)
    second = run(db, *pcaps)
    assert snapshot(db) == once
    assert second["inventory"]["flows_absorbed"] == 0
    assert second["inventory"]["flows_already_absorbed"] == first["inventory"]["flows_absorbed"] > 0
    assert (second["assets"], second["edges"], second["roles"]) == (
        first["assets"],
        first["edges"],
        first["roles"],
    )


def _alert(ts: float, count: int = 1) -> Alert:
    flow = FlowRef(7, "1:x", "tcp", "10.0.0.1", 40000, "10.0.0.2", 502)
    return Alert(
        ts=ts,
        flow=flow,
        rule="policy:test:function_not_allowed",
        signature="write to a read-only conduit",
        category="policy",
        severity=1,
        signature_id=9_000_001,
        evidence={"function": 16},
        count=count,
        last_ts=ts + count,
    )


def test_store_alerts_upsert_keyed_by_alert_id_then_ack_and_close(tmp_path: Path) -> None:
    from sensor.assets.graph import CommunicationGraph
    from sensor.assets.inventory import Inventory

    store = Store(tmp_path / "z.db")
    inv, graph = Inventory(), CommunicationGraph()
    store.handle(_alert(10.0, count=3))
    store.handle(_alert(20.0))
    store.save(inv, graph)
    assert store.alerts_inserted == 2
    store.handle(_alert(10.0, count=5))  # the same alert, replayed with a larger aggregate count
    store.handle(_alert(10.0, count=2))
    store.save(inv, graph)
    assert (store.alerts_inserted, store.alerts_updated) == (2, 1)
    alerts = store.list_alerts()
    assert [a["count"] for a in alerts] == [1, 5]
    first = alerts[1]
    assert first["eve"]["alert"]["signature_id"] == 9_000_001 and first["evidence"] == {"function": 16}
    assert first["src_ip"] == "10.0.0.1" and first["dest_port"] == 502
    assert store.ack_alert(first["alert_id"], by="analyst", at=100.0, note="looking")
    assert not store.ack_alert(first["alert_id"], by="analyst")  # already acknowledged
    assert store.close_alert(first["alert_id"], by="analyst", at=200.0)
    assert not store.close_alert("no-such-id", by="analyst")
    store.handle(_alert(10.0, count=9))  # seen again after closing: count grows, status stays
    store.save(inv, graph)
    got = store.get_alert(first["alert_id"])
    assert got is not None
    assert (got["status"], got["count"], got["acked_by"], got["note"]) == ("closed", 9, "analyst", "looking")
    assert store.list_alerts(status="open")[0]["count"] == 1
    assert store.list_alerts(category="anomaly") == []
    store.close()


def test_store_asset_filters(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    run(db, PCAPS / "modbus-pymodbus-polling.pcap", PCAPS / "mqtt-v311-mosquitto.pcap")
    store = Store(db, readonly=True)
    assert [a["ip"] for a in store.list_assets(role="mqtt_broker")] == ["127.0.0.1"]
    assert [a["ip"] for a in store.list_assets(protocol="modbus")] == ["127.0.0.1"]
    assert store.list_assets(role="opcua_server") == []
    assert store.list_assets(ip_prefix="10.") == []
    assert store.count_assets() == 1 and store.count_edges() == len(store.list_edges())
    assert store.get_asset("192.0.2.1") is None
    g = store.graph()
    assert g.neighbours("127.0.0.1") == {"127.0.0.1"}
    store.close()


def test_store_topology_has_the_graphs_shape(tmp_path: Path) -> None:
    """topology() (what a path search reads) holds the nodes and edges graph() does, in the same order;
    the store holds real captures given a plant's addresses (tests/zw_reach.py)."""
    db = tmp_path / "s.db"
    replay(plant_captures(tmp_path), SensorConfig(db_path=db))
    store = Store(db, readonly=True)
    try:
        graph, topology = store.graph(), store.topology()
    finally:
        store.close()
    assert len(graph) >= 3 and len(graph.nodes()) >= 4
    assert topology.nodes() == graph.nodes()
    assert [e.key for e in topology.edges()] == [e.key for e in graph.edges()]
    assert all(topology.neighbours(ip) == graph.neighbours(ip) for ip in graph.nodes())
    assert not any(e.operations for e in topology.edges())  # the part it skips
