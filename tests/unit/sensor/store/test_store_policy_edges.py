"""sensor/store/sqlite.py ``list_edges_with_policy``: a policy alert marks the communication its row names
and every other one its evidence lists (``edges``, written by policy/observer.py); evidence that lists them
badly, or an alert of another category, marks nothing else and never breaks the listing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from zw_paths import PCAPS

from sensor.records import Alert, FlowRef
from sensor.runtime import Sensor, SensorConfig
from sensor.store.sqlite import Store

LOOPBACK = "127.0.0.1"


def _alert(n: int, evidence: dict[str, Any], category: str = "policy", port: int = 502) -> Alert:
    return Alert(
        ts=float(n),
        flow=FlowRef(n, "1:x", "tcp", LOOPBACK, 40000 + n, LOOPBACK, port),
        rule=f"policy:a->b:no_conduit#{n}" if category == "policy" else f"1:{n}:1",
        signature="test",
        category=category,
        severity=2,
        signature_id=9_000_000 + n,
        app_proto="modbus",
        evidence=evidence,
    )


def _status(db: Path) -> dict[tuple[str, int], tuple[str, list[str]]]:
    store = Store(db, readonly=True)
    try:
        edges = store.list_edges_with_policy()
    finally:
        store.close()
    return {
        (e["protocol"], e["port"]): (e["policy"]["status"], [g["rule"] for g in e["policy"]["alerts"]])
        for e in edges
    }


def test_listed_edges_mark_only_well_formed_policy_evidence(tmp_path: Path) -> None:
    db = tmp_path / "zw.db"
    sensor = Sensor(SensorConfig(db_path=db))
    sensor.replay_file(PCAPS / "modbus-pymodbus-polling.pcap")  # modbus/502 and a bare tcp/502 edge
    bad_lists: list[Any] = ["tcp/502", [1, "tcp", None, [502]], {"protocol": "tcp", "port": 502}]
    for n, edges in enumerate(bad_lists, start=1):
        sensor.alerts.publish(_alert(n, {"edges": edges}))
    sensor.alerts.publish(_alert(10, {"edges": [{"protocol": "tcp", "port": 502}]}, category="signature"))
    sensor.finish()
    before = _status(db)
    assert before[("modbus", 502)] == ("violation", [f"policy:a->b:no_conduit#{n}" for n in (1, 2, 3)])
    assert before[("tcp", 502)] == ("none", [])

    sensor = Sensor(SensorConfig(db_path=db))
    listed = {"edges": [{"protocol": "modbus", "port": 502}, {"protocol": "tcp", "port": 502}, "junk"]}
    sensor.alerts.publish(_alert(20, listed))
    sensor.finish()
    after = _status(db)
    assert after[("tcp", 502)] == ("violation", ["policy:a->b:no_conduit#20"])
    # listed and named by its row: counted once there
    assert after[("modbus", 502)][1].count("policy:a->b:no_conduit#20") == 1

    # a row whose evidence is not JSON (written by something else): listed as its row says, nothing more
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE alerts SET evidence = '{\"edges\": [' WHERE rule = 'policy:a->b:no_conduit#20'")
    conn.close()
    assert _status(db)[("tcp", 502)] == ("none", [])


def _unidentified(n: int, evidence: dict[str, Any]) -> Alert:
    """A policy alert about a flow no dissector claimed: app_proto empty, the transport in its evidence."""
    return Alert(
        ts=float(n),
        flow=FlowRef(n, "1:x", "tcp", LOOPBACK, 40000 + n, LOOPBACK, 502),
        rule=f"policy:a->b:no_conduit#{n}",
        signature="test",
        category="policy",
        severity=2,
        signature_id=9_000_000 + n,
        evidence=evidence,
    )


def test_an_unidentified_flows_alert_marks_the_edge_named_by_its_transport(tmp_path: Path) -> None:
    db = tmp_path / "zw.db"
    sensor = Sensor(SensorConfig(db_path=db))
    sensor.replay_file(PCAPS / "modbus-pymodbus-polling.pcap")  # modbus/502 and a bare tcp/502 edge
    sensor.alerts.publish(_unidentified(1, {"transport": "tcp"}))
    sensor.alerts.publish(_unidentified(2, {"transport": "udp"}))  # no udp/502 edge: marks nothing
    sensor.alerts.publish(_unidentified(3, {}))  # no transport recorded: as before, marks nothing
    listed = {
        "transport": "tcp",
        "edges": [{"protocol": "tcp", "port": 502}, {"protocol": "modbus", "port": 502}],
    }
    sensor.alerts.publish(_unidentified(4, listed))
    sensor.finish()
    store = Store(db, readonly=True)
    try:
        groups = {
            (e["protocol"], e["port"]): [(g["rule"], g["alerts"]) for g in e["policy"]["alerts"]]
            for e in store.list_edges_with_policy()
        }
    finally:
        store.close()
    # #4 is named by its row and listed in its evidence on tcp/502: counted once there
    assert groups[("tcp", 502)] == [("policy:a->b:no_conduit#1", 1), ("policy:a->b:no_conduit#4", 1)]
    assert groups[("modbus", 502)] == [("policy:a->b:no_conduit#4", 1)]

    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE alerts SET evidence = '{\"transport\": ' WHERE rule = 'policy:a->b:no_conduit#1'"
        )
    conn.close()
    assert _status(db)[("tcp", 502)] == ("violation", ["policy:a->b:no_conduit#4"])


def _unidentified_on(n: int, transport: str, port: int) -> Alert:
    """A policy alert about a flow no native dissector claimed, on ``transport``/``port``."""
    return Alert(
        ts=float(n),
        flow=FlowRef(n, "1:x", transport, LOOPBACK, 40000 + n, LOOPBACK, port),
        rule=f"policy:a->b:no_conduit#{n}",
        signature="test",
        category="policy",
        severity=2,
        signature_id=9_000_000 + n,
        evidence={"protocol": "unknown", "transport": transport, "summary": f"unidentified flow on {port}"},
    )


def _tshark_named(protocol: str, transport: str, port: int) -> Any:
    from sensor.deep import OtherProtocolFlow

    return OtherProtocolFlow(protocol, transport, LOOPBACK, 41000, LOOPBACK, port, 1.0, 2.0, 4)


def test_an_unidentified_flows_alert_marks_its_edge_after_tshark_named_it(tmp_path: Path) -> None:
    """--deep renames a flow's tcp/udp edge after the protocol tshark identified (s7comm_plus, dnp3,
    bacnet...), before or after the policy alert about the flow (replay: after; live: either): the alert
    still names the transport, and the renamed edge is the communication it is about."""
    db = tmp_path / "zw.db"
    sensor = Sensor(SensorConfig(db_path=db))
    sensor.replay_file(PCAPS / "modbus-pymodbus-polling.pcap")  # modbus/502 and a bare tcp/502 edge
    sensor.alerts.publish(_unidentified_on(1, "tcp", 102))
    sensor.alerts.publish(_unidentified_on(2, "udp", 47808))
    sensor.alerts.publish(_unidentified_on(3, "tcp", 47808))  # another transport: not the BACnet edge
    sensor.alerts.publish(_unidentified_on(4, "tcp", 502))  # the bare tcp/502 edge, never the Modbus one
    sensor.inventory.absorb_other_protocols(
        [_tshark_named("s7comm_plus", "tcp", 102), _tshark_named("bacnet", "udp", 47808)]
    )
    sensor.inventory.absorb_other_protocols([_tshark_named("dnp3", "tcp", 20000)])
    sensor.alerts.publish(_unidentified_on(5, "tcp", 20000))  # named before its alert (live --deep)
    sensor.finish()
    status = _status(db)
    assert status[("s7comm_plus", 102)] == ("violation", ["policy:a->b:no_conduit#1"])
    assert status[("bacnet", 47808)] == ("violation", ["policy:a->b:no_conduit#2"])
    assert status[("dnp3", 20000)] == ("violation", ["policy:a->b:no_conduit#5"])
    assert status[("tcp", 502)] == ("violation", ["policy:a->b:no_conduit#4"])
    assert status[("modbus", 502)] == ("none", [])  # a native dissector's edge: its alerts name it
    assert ("tcp", 102) not in status and ("tcp", 47808) not in status


def test_every_native_dissectors_edge_is_kept_from_transport_matching() -> None:
    """The store names the native dissectors in SQL: a dissector added to the sensor must be added there."""
    from sensor.runtime import default_dissectors
    from sensor.store.sqlite import _TRANSPORT_MATCHES_EDGE

    names = {d.name for d in default_dissectors()}
    assert names == {"modbus", "opcua", "mqtt", "tls"}
    assert all(f"'{name}'" in _TRANSPORT_MATCHES_EDGE for name in names)
