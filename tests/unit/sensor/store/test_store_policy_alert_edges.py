"""sensor/store/sqlite.py ``policy_alert_edges`` (schema version 4): the communications each policy alert
names, derived from the alert's row and evidence when it is written (triggers) and for the alerts stored
before (the migration), give ``Store.list_edges_with_policy`` exactly what the query before them gave by
reading every policy alert's evidence JSON at each request. That query is kept here as the reference."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sensor.assets.graph import CommunicationGraph
from sensor.assets.inventory import Inventory
from sensor.errors import UserError
from sensor.records import Alert, FlowRef
from sensor.store.sqlite import POLICY_ALERT_EDGES_SCHEMA_VERSION, Store, migrations, split_statements

# --- the reference: Store.list_edges_with_policy as it was before schema version 4 -----------------------

_OLD_ALERT_EDGE_PROTOCOL = (
    "(CASE WHEN {a}app_proto <> '' THEN {a}app_proto"
    " WHEN json_valid({a}evidence) THEN json_extract({a}evidence, '$.transport') END)"
)
_OLD_TRANSPORT_MATCHES_EDGE = (
    "(p.app_proto = e.transport AND e.protocol NOT IN ('modbus', 'opcua', 'mqtt', 'tls'))"
)


def old_json_list_edges_with_policy(
    conn: sqlite3.Connection, *, ip: str | None = None, protocol: str | None = None
) -> list[dict[str, Any]]:
    """The SQL before ``policy_alert_edges``, verbatim: every policy alert's evidence read at each call."""
    where, args = [], []
    if ip:
        where.append("(e.client_ip = ? OR e.server_ip = ?)")
        args += [ip, ip]
    if protocol:
        where.append("e.protocol = ?")
        args.append(protocol)
    sql = (
        "SELECT e.edge_id, e.client_ip, e.server_ip, e.protocol, e.port, e.transport, e.packets, e.bytes,"
        " e.flows, e.first_seen, e.last_seen, e.operations,"
        " p.conduit, p.rule, p.alerts, p.hits, p.still_open, p.last_ts FROM edges e LEFT JOIN ("
        "SELECT src_ip, dest_ip, app_proto, dest_port, conduit, rule, COUNT(*) AS alerts,"
        " SUM(count) AS hits, SUM(CASE WHEN status = 'closed' THEN 0 ELSE 1 END) AS still_open,"
        " MAX(last_ts) AS last_ts FROM ("
        f"SELECT src_ip, dest_ip, {_OLD_ALERT_EDGE_PROTOCOL.format(a='')} AS app_proto, dest_port, conduit,"
        " rule, count, status, last_ts FROM alerts WHERE category = 'policy'"
        " UNION ALL SELECT a.src_ip, a.dest_ip,"
        " CASE WHEN x.type = 'object' THEN json_extract(x.value, '$.protocol') END AS protocol,"
        " CASE WHEN x.type = 'object' THEN json_extract(x.value, '$.port') END AS port,"
        " a.conduit, a.rule, a.count, a.status, a.last_ts"
        " FROM alerts a, json_each(CASE WHEN json_valid(a.evidence) THEN a.evidence END, '$.edges') x"
        " WHERE a.category = 'policy' AND instr(a.evidence, '\"edges\"') > 0 AND x.type = 'object'"
        f" AND NOT (protocol IS {_OLD_ALERT_EDGE_PROTOCOL.format(a='a.')} AND port IS a.dest_port))"
        " GROUP BY src_ip, dest_ip, app_proto, dest_port, conduit, rule) p"
        " ON p.src_ip = e.client_ip AND p.dest_ip = e.server_ip AND p.dest_port = e.port"
        f" AND (p.app_proto = e.protocol OR {_OLD_TRANSPORT_MATCHES_EDGE})"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY e.edge_id, p.conduit, p.rule"
    )
    return Store._edges_with_policy(conn.execute(sql, args))  # the rows merged as the store merges them


# --- a varied store -------------------------------------------------------------------------------------

PLC, HMI, ENG, SCANNER = "10.0.0.10", "10.0.0.20", "10.0.0.30", "10.0.0.66"
EDGES = [  # (client, server, protocol, port, transport)
    (HMI, PLC, "modbus", 502, "tcp"),
    (HMI, PLC, "tcp", 502, "tcp"),  # a bare connection no dissector claimed
    (HMI, PLC, "mqtt", 1883, "tcp"),
    (HMI, PLC, "opcua", 4840, "tcp"),
    (HMI, PLC, "s7comm_plus", 102, "tcp"),  # named by tshark (--deep)
    (HMI, PLC, "bacnet", 47808, "udp"),  # named by tshark
    (HMI, PLC, "dnp3", 20000, "tcp"),  # named by tshark
    (PLC, HMI, "modbus", 502, "tcp"),  # the other direction
    (ENG, PLC, "modbus", 502, "tcp"),
    (ENG, PLC, "tls", 443, "tcp"),
    (ENG, HMI, "udp", 161, "udp"),
    *((SCANNER, PLC, "tcp", port, "tcp") for port in (21, 23, 80, 9999)),
]
QUERIES: list[dict[str, str]] = [
    {},
    {"ip": HMI},
    {"ip": SCANNER},
    {"ip": "10.9.9.9"},
    {"protocol": "modbus"},
    {"protocol": "tcp"},
    {"protocol": "bacnet"},
    {"ip": ENG, "protocol": "tls"},
]


def _policy(
    n: int,
    client: str,
    server: str,
    port: int,
    *,
    app_proto: str = "modbus",
    transport: str = "tcp",
    evidence: dict[str, Any] | None = None,
    rule: str = "policy:hmi->plc:no_conduit",
    conduit: str = "",
    count: int = 1,
    category: str = "policy",
) -> Alert:
    return Alert(
        ts=float(n),
        flow=FlowRef(n, "1:x", transport, client, 40000 + n, server, port),
        rule=rule,
        signature="test",
        category=category,
        severity=2,
        signature_id=9_000_000 + n,
        app_proto=app_proto,
        conduit=conduit,
        evidence={} if evidence is None else evidence,
        count=count,
        last_ts=float(n) + count,
    )


def _unclaimed(n: int, client: str, port: int, transport: str = "tcp", **kw: Any) -> Alert:
    """A policy alert about a flow no dissector claimed: no app_proto, the transport in its evidence."""
    evidence = {"protocol": "unknown", "transport": transport, **kw.pop("evidence", {})}
    return _policy(n, client, PLC, port, app_proto="", transport=transport, evidence=evidence, **kw)


def _listing(*edges: tuple[str, int]) -> dict[str, Any]:
    """Evidence of an aggregated alert, as policy/observer.py writes it."""
    return {
        "protocols": list(dict.fromkeys(p for p, _ in edges)),
        "edges": [{"protocol": p, "port": port} for p, port in edges],
    }


def _save(store: Store, alerts: list[Alert]) -> None:
    for alert in alerts:
        store.handle(alert)
    store.save(Inventory(), CommunicationGraph(max_edges=0))


def _raw(db: Path, sql: str, args: tuple[Any, ...] = ()) -> None:
    """A change written by something other than the store (sqlite3, an older version)."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, args)
    conn.close()


def build_varied_store(db: Path) -> dict[str, str]:
    """Edges and policy alerts of every kind list_edges_with_policy has to tell apart; returns alert ids."""
    store = Store(db)
    store.conn.executemany(
        "INSERT INTO edges (edge_id, client_ip, server_ip, protocol, port, transport, packets, bytes, flows,"
        " first_seen, last_seen, operations) VALUES (?, ?, ?, ?, ?, ?, 10, 1000, 1, 1.0, 2.0, '{}')",
        [(f"{c}>{s}:{p}/{port}", c, s, p, port, t) for c, s, p, port, t in EDGES],
    )
    denied = "policy:hmi->plc:denied_write"
    alerts = {
        "own": _policy(1, HMI, PLC, 502, rule=denied, conduit="hmi-plc", count=3),
        "own_again": _policy(2, HMI, PLC, 502, rule=denied, conduit="hmi-plc", count=7),
        "several": _policy(3, HMI, PLC, 502, evidence=_listing(("modbus", 502), ("mqtt", 1883)), count=12),
        "bare_tcp": _unclaimed(4, HMI, 502, rule="policy:hmi->plc:unknown"),
        "s7_by_tshark": _unclaimed(5, HMI, 102),
        "bacnet_by_tshark": _unclaimed(6, HMI, 47808, "udp"),
        "wrong_transport": _unclaimed(7, HMI, 47808, "tcp", rule="policy:other"),
        "dnp3_by_tshark": _unclaimed(8, HMI, 20000, rule="policy:dnp3"),
        "scan": _unclaimed(
            9, SCANNER, 9999, rule="policy:scan", evidence=_listing(*(("tcp", p) for p in (9999, 21, 23, 80)))
        ),
        "closed_tls": _policy(10, ENG, PLC, 443, app_proto="tls", rule="policy:eng->plc:tls", conduit="eng"),
        "acked": _policy(11, ENG, PLC, 502, rule="policy:eng->plc:write", conduit="eng"),
        "closed_modbus": _policy(12, ENG, PLC, 502, rule="policy:eng->plc:read", conduit="eng", count=2),
        "nothing_recorded": _policy(13, HMI, PLC, 502, app_proto="", rule="policy:none", evidence={}),
        "junk_items": _policy(
            14,
            HMI,
            PLC,
            502,
            rule="policy:junk",
            evidence={
                "edges": [
                    1,
                    None,
                    "tcp/502",
                    [502],
                    {"protocol": "mqtt"},
                    {"port": 4840},
                    {"protocol": "opcua", "port": 4840},
                ]
            },
        ),
        "edges_not_a_list": _policy(15, HMI, PLC, 502, rule="policy:junk2", evidence={"edges": "tcp/502"}),
        "reverse": _policy(16, PLC, HMI, 502, rule="policy:plc->hmi"),
        "signature": _policy(
            17, HMI, PLC, 502, rule="1:17:1", category="signature", evidence=_listing(("tcp", 502))
        ),
        "not_json_own": _policy(18, HMI, PLC, 502, rule="policy:broken", evidence=_listing(("mqtt", 1883))),
        "not_json_bare": _unclaimed(19, HMI, 502, rule="policy:broken2"),
        "grows": _policy(20, HMI, PLC, 1883, app_proto="mqtt", rule="policy:grows", evidence={}),
        "shrinks": _policy(
            21,
            HMI,
            PLC,
            4840,
            app_proto="opcua",
            rule="policy:shrinks",
            evidence=_listing(("opcua", 4840), ("modbus", 502), ("dnp3", 20000)),
        ),
        "deleted": _policy(22, HMI, PLC, 1883, app_proto="mqtt", rule="policy:deleted"),
        "nowhere": _policy(23, "10.1.1.1", "10.1.1.2", 502, rule="policy:no_edge"),
    }
    _save(store, list(alerts.values()))
    ids = {name: alert.alert_id for name, alert in alerts.items()}
    store.ack_alert(ids["acked"], by="t")
    store.close_alert(ids["closed_tls"], by="t")
    store.close_alert(ids["closed_modbus"], by="t")
    store.close_alert(ids["own"], by="t")  # one of a group of two closed: the group stays open
    # later saves of the same alerts (the upsert): a larger count and one more communication, or fewer
    listed = _listing(("mqtt", 1883), ("s7comm_plus", 102))
    grows = _policy(20, HMI, PLC, 1883, app_proto="mqtt", rule="policy:grows", count=5, evidence=listed)
    shrinks = _policy(21, HMI, PLC, 4840, app_proto="opcua", rule="policy:shrinks", evidence={})
    _save(store, [grows, shrinks, alerts["scan"]])  # and a replay of one unchanged
    store.close()
    # rows written by something else: evidence that is not JSON, a deleted alert
    _raw(db, "UPDATE alerts SET evidence = '{\"edges\": [' WHERE alert_id = ?", (ids["not_json_own"],))
    _raw(db, "UPDATE alerts SET evidence = '{\"transport\": ' WHERE alert_id = ?", (ids["not_json_bare"],))
    _raw(db, "DELETE FROM alerts WHERE alert_id = ?", (ids["deleted"],))
    return ids


def _marks(edges: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], tuple[str, list[tuple[Any, ...]]]]:
    return {
        (e["client"], e["server"], e["protocol"], e["port"]): (
            e["policy"]["status"],
            [(g["rule"], g["alerts"], g["count"], g["open"]) for g in e["policy"]["alerts"]],
        )
        for e in edges
    }


def _assert_varied_marks(edges: list[dict[str, Any]]) -> None:
    """The marks the varied store must show (so an equivalence of two empty answers cannot pass)."""
    marks = _marks(edges)
    # by conduit ("" first), then rule; "shrinks" listed it only in the evidence its next save replaced
    assert marks[(HMI, PLC, "modbus", 502)] == (
        "violation",
        [
            ("policy:broken", 1, 1, 1),  # its evidence is not JSON: its row still names modbus/502
            ("policy:hmi->plc:no_conduit", 1, 12, 1),
            ("policy:junk", 1, 1, 1),
            ("policy:junk2", 1, 1, 1),
            ("policy:hmi->plc:denied_write", 2, 10, 1),  # two alerts (3 + 7 hits), one of them closed
        ],
    )
    assert marks[(HMI, PLC, "mqtt", 1883)] == (
        "violation",
        [("policy:grows", 1, 5, 1), ("policy:hmi->plc:no_conduit", 1, 12, 1)],
    )
    assert marks[(HMI, PLC, "opcua", 4840)] == (
        "violation",
        [("policy:junk", 1, 1, 1), ("policy:shrinks", 1, 1, 1)],
    )
    assert marks[(HMI, PLC, "tcp", 502)] == ("violation", [("policy:hmi->plc:unknown", 1, 1, 1)])
    assert marks[(HMI, PLC, "s7comm_plus", 102)] == (
        "violation",
        [("policy:grows", 1, 5, 1), ("policy:hmi->plc:no_conduit", 1, 1, 1)],
    )
    assert marks[(HMI, PLC, "bacnet", 47808)] == ("violation", [("policy:hmi->plc:no_conduit", 1, 1, 1)])
    assert marks[(HMI, PLC, "dnp3", 20000)] == ("violation", [("policy:dnp3", 1, 1, 1)])
    assert marks[(PLC, HMI, "modbus", 502)] == ("violation", [("policy:plc->hmi", 1, 1, 1)])
    assert marks[(ENG, PLC, "tls", 443)] == ("closed", [("policy:eng->plc:tls", 1, 1, 0)])
    assert marks[(ENG, PLC, "modbus", 502)] == (
        "violation",
        [("policy:eng->plc:read", 1, 2, 0), ("policy:eng->plc:write", 1, 1, 1)],
    )
    assert marks[(ENG, HMI, "udp", 161)] == ("none", [])
    for port in (21, 23, 80, 9999):
        assert marks[(SCANNER, PLC, "tcp", port)] == ("violation", [("policy:scan", 1, 1, 1)])


def test_the_table_gives_the_map_what_reading_every_evidence_gave(tmp_path: Path) -> None:
    db = tmp_path / "zw.db"
    ids = build_varied_store(db)
    store = Store(db, readonly=True)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        for query in QUERIES:
            assert store.list_edges_with_policy(**query) == old_json_list_edges_with_policy(
                store.conn, **query
            ), query
        assert len(statements) == len(QUERIES) * 2
        mine = [s for s in statements if "policy_alert_edges" in s]
        assert len(mine) == len(QUERIES) and not any("json" in s for s in mine)  # no evidence read
        _assert_varied_marks(store.list_edges_with_policy())
        rows = store.conn.execute("SELECT alert_id, protocol, port FROM policy_alert_edges").fetchall()
    finally:
        store.close()
    by_alert: dict[str, list[tuple[str, int]]] = {}
    for alert_id, protocol, port in rows:
        by_alert.setdefault(alert_id, []).append((protocol, port))
    assert sorted(by_alert[ids["several"]]) == [("modbus", 502), ("mqtt", 1883)]  # own one listed once
    assert by_alert[ids["bare_tcp"]] == [("tcp", 502)]
    assert sorted(by_alert[ids["grows"]]) == [("mqtt", 1883), ("s7comm_plus", 102)]
    assert by_alert[ids["shrinks"]] == [("opcua", 4840)]
    assert by_alert[ids["not_json_own"]] == [("modbus", 502)]
    for gone in ("nothing_recorded", "signature", "not_json_bare", "deleted"):
        assert ids[gone] not in by_alert, gone
    assert ids["closed_tls"] in by_alert  # triage keeps an alert's communications


def test_a_version_3_database_keeps_its_marks_after_the_upgrade(tmp_path: Path) -> None:
    """Alerts written before version 4 (no policy_alert_edges): the migration fills the table from them."""
    current = tmp_path / "current.db"
    build_varied_store(current)
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at DOUBLE PRECISION NOT NULL)"
    )
    for version, name, sql in migrations():
        if version < POLICY_ALERT_EDGES_SCHEMA_VERSION:
            for statement in split_statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, name))
    # the same rows, as version 3 holds them (its alerts and edges tables are those of version 4)
    conn.execute("ATTACH DATABASE ? AS current", (str(current),))
    conn.execute("INSERT INTO edges SELECT * FROM current.edges")
    conn.execute("INSERT INTO alerts SELECT * FROM current.alerts")
    expected_rows = conn.execute(
        "SELECT * FROM current.policy_alert_edges ORDER BY alert_id, protocol, port"
    ).fetchall()
    conn.execute("DETACH DATABASE current")
    conn.close()

    reader = Store(old, readonly=True)  # not upgraded yet: says so rather than showing no marks
    with pytest.raises(UserError, match="older version"):
        reader.list_edges_with_policy()
    reader.close()

    store = Store(old)
    try:
        assert store.schema_version() == POLICY_ALERT_EDGES_SCHEMA_VERSION
        # the migration derives the same rows as the triggers did for the same alerts
        assert (
            store.conn.execute(
                "SELECT * FROM policy_alert_edges ORDER BY alert_id, protocol, port"
            ).fetchall()
            == expected_rows
        )
        edges = store.list_edges_with_policy()
        assert edges == old_json_list_edges_with_policy(store.conn)
        _assert_varied_marks(edges)
        # and the upgraded file goes on: a new alert on an old file marks its communications
        _save(
            store, [_policy(30, ENG, HMI, 161, app_proto="", evidence={"transport": "udp"}, rule="policy:x")]
        )
        assert _marks(store.list_edges_with_policy(ip=ENG))[(ENG, HMI, "udp", 161)] == (
            "violation",
            [("policy:x", 1, 1, 1)],
        )
    finally:
        store.close()


def test_rows_follow_every_write_of_an_alert_and_a_replay_touches_none(tmp_path: Path) -> None:
    db = tmp_path / "zw.db"
    store = Store(db)
    rows = "SELECT protocol, port, conduit, count, status, last_ts FROM policy_alert_edges ORDER BY protocol"
    try:
        alert = _policy(1, HMI, PLC, 502, evidence=_listing(("modbus", 502), ("mqtt", 1883)), count=2)
        _save(store, [alert])
        assert store.conn.execute(rows).fetchall() == [
            ("modbus", 502, "", 2, "open", 3.0),
            ("mqtt", 1883, "", 2, "open", 3.0),
        ]
        # a replay of the same capture changes nothing the rows derive from: they are not rewritten
        store.conn.execute("UPDATE policy_alert_edges SET conduit = 'untouched'")
        _save(store, [alert])
        assert {r[2] for r in store.conn.execute(rows)} == {"untouched"}
        # the alert moves on (a larger count, a later last_ts), then is triaged: its rows follow
        _save(store, [_policy(1, HMI, PLC, 502, evidence=_listing(("modbus", 502), ("mqtt", 1883)), count=4)])
        store.ack_alert(alert.alert_id, by="t")
        assert store.conn.execute(rows).fetchall() == [
            ("modbus", 502, "", 4, "acknowledged", 5.0),
            ("mqtt", 1883, "", 4, "acknowledged", 5.0),
        ]
        store.conn.execute(
            "UPDATE alerts SET evidence = ? WHERE alert_id = ?",
            (json.dumps({"transport": "tcp"}), alert.alert_id),
        )
        assert [r[:2] for r in store.conn.execute(rows)] == [("modbus", 502)]
        store.conn.execute("UPDATE alerts SET category = 'anomaly' WHERE alert_id = ?", (alert.alert_id,))
        assert store.conn.execute(rows).fetchall() == []
        store.conn.execute("UPDATE alerts SET category = 'policy' WHERE alert_id = ?", (alert.alert_id,))
        assert [r[:2] for r in store.conn.execute(rows)] == [("modbus", 502)]
        store.conn.execute("DELETE FROM alerts")
        assert store.conn.execute("SELECT COUNT(*) FROM policy_alert_edges").fetchone()[0] == 0
    finally:
        store.close()
