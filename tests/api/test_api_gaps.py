"""``/me``, capture counters kept in the store, the policy status of communications, observed
certificates with their wire↔PKI status, and ``serve --cert-expiry-days``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zw_api_env import ApiEnv
from zw_paths import PCAPS, REPO

from api.auth import ROLE_PERMISSIONS
from api.roles import Role
from sensor.runtime import SensorConfig, replay
from sensor.store.sqlite import Store
from sensor.store.summary_counters import flatten_summary, unflatten_summary

LOOPBACK_POLICY = """\
version: 1
site: loopback
default: deny
zones:
  - id: loopback
    members: [127.0.0.0/8]
    intra_zone: deny
conduits: []
"""
CAPTURES = ("modbus-pymodbus-polling.pcap", "mqtt-v311-mosquitto.pcap", "mqtt-tls-mosquitto.pcap")


@pytest.fixture
def judged(
    make_env: Callable[..., ApiEnv], tmp_path: Path, pki_paths: tuple[Path, Path]
) -> tuple[ApiEnv, dict[str, Any]]:
    """A store filled by ``replay --db`` with a policy and the PKI judging certificates; no sensor."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(LOOPBACK_POLICY)
    db = tmp_path / "zonewarden.db"
    summary, _ = replay(
        [PCAPS / n for n in CAPTURES], SensorConfig(db_path=db, policy_path=policy, pki_dir=pki_paths[0])
    )
    return make_env(db_path=db, policy_path=policy), summary


@pytest.mark.parametrize("role", list(Role))
def test_me_tells_the_caller_its_role_token_and_permissions(env: ApiEnv, role: Role) -> None:
    r = env.client.get("/api/v1/me", headers=env.auth(role))
    assert r.status_code == 200
    me = r.json()
    token = env.tokens[role]
    assert me["role"] == str(role) and me["token_name"] == f"test-{role}"
    assert token.startswith(me["token_prefix"]) and me["token_prefix"] == f"zw_{me['token_id']}_"
    assert me["permissions"] == sorted(str(p) for p in ROLE_PERMISSIONS[role])
    assert token.split("_", 2)[2] not in r.text  # never the secret
    assert env.client.get("/api/v1/me").status_code == 401


def test_status_without_a_sensor_reads_the_counters_an_earlier_replay_saved(
    judged: tuple[ApiEnv, dict[str, Any]],
) -> None:
    env, summary = judged
    doc = env.client.get("/api/v1/status", headers=env.auth("viewer")).json()
    assert doc["source"] == "store" and doc["sensor"]["mode"] == "none"
    assert doc["saved_at"] is not None and doc["saved_at"] > 1_600_000_000
    for key in ("packets", "bytes", "flows", "decode_errors"):
        assert doc[key] == summary[key] > 0 or key == "decode_errors", key
    assert doc["gaps"] == summary["flow_table"].get("tcp.reassembly_gap", 0)
    assert doc["drops"] == {
        "kernel": summary["capture"]["kernel_drops"],
        "queue": summary["capture"]["queue_drops"],
    }
    assert doc["capture"]["packets"] == summary["capture"]["packets"] == summary["packets"]
    modbus = doc["protocols"]["modbus"]
    assert modbus["transactions"] == summary["modbus"]["transactions"] > 0
    assert modbus["requests_by_function"] == summary["modbus"]["requests_by_function"]
    assert doc["protocols"]["tls"]["versions"] == summary["tls"]["versions"]  # keys with spaces and dots
    assert doc["alerts"]["total"] == summary["alerts"]["total"] > 0


def test_status_counters_are_the_last_runs_not_a_sum(tmp_path: Path, make_env: Callable[..., ApiEnv]) -> None:
    db = tmp_path / "zonewarden.db"
    env = make_env(db_path=db)
    assert env.client.get("/api/v1/status", headers=env.auth("viewer")).json()["source"] == "none"
    first, _ = replay([PCAPS / CAPTURES[0]], SensorConfig(db_path=db))
    second, _ = replay([PCAPS / CAPTURES[0]], SensorConfig(db_path=db))  # the same capture again
    assert first["packets"] == second["packets"]
    doc = env.client.get("/api/v1/status", headers=env.auth("viewer")).json()
    assert doc["source"] == "store" and doc["packets"] == first["packets"]
    replay([PCAPS / CAPTURES[1]], SensorConfig(db_path=db))  # another capture: its numbers only
    doc = env.client.get("/api/v1/status", headers=env.auth("viewer")).json()
    assert "modbus" not in doc["protocols"] or doc["protocols"]["modbus"].get("transactions", 0) == 0


def test_summary_counter_names_round_trip() -> None:
    doc = {
        "packets": 5,
        "flow_table": {"tcp.reassembly_gap": 2},
        "tls": {"versions": {"TLS 1.2": 1}, "sni": ["x"]},
        "odd/key~": {"a": 1},
        "flag": True,
        "name": "text",
    }
    flat = flatten_summary(doc)
    assert flat["/summary/odd~1key~0/a"] == 1 and "/summary/flag" not in flat
    assert unflatten_summary({**flat, "inventory.evicted": 3}) == {
        "packets": 5,
        "flow_table": {"tcp.reassembly_gap": 2},
        "tls": {"versions": {"TLS 1.2": 1}},
        "odd/key~": {"a": 1},
    }


def test_communications_carry_their_policy_status(judged: tuple[ApiEnv, dict[str, Any]]) -> None:
    env, _ = judged
    h = env.auth("viewer")
    edges = env.client.get("/api/v1/communications", headers=h).json()["items"]
    by_protocol = {e["protocol"]: e for e in edges}
    assert {"modbus", "mqtt", "tls"} <= by_protocol.keys()
    # the loopback zone denies traffic between its members: one no_conduit alert for the host pair
    # (aggregated per rule and host pair) lists every communication it counted, and marks each
    [alert] = env.client.get("/api/v1/alerts", headers=h, params={"category": "policy"}).json()["items"]
    assert alert["app_proto"] == "modbus" and alert["dest_port"] == 502  # the first operation's
    assert {(x["protocol"], x["port"]) for x in alert["evidence"]["edges"]} == {
        (e["protocol"], e["port"]) for e in edges
    }
    for edge in edges:
        policy = edge["policy"]
        assert policy["status"] == "violation", edge
        [group] = policy["alerts"]
        assert group["conduit"] == "" and group["rule"] == "policy:loopback->loopback:no_conduit"
        assert group["alerts"] == group["open"] == 1 and group["count"] == alert["count"] > 1
    detail = env.client.get("/api/v1/assets/127.0.0.1", headers=h).json()
    assert {e["policy"]["status"] for e in detail["edges"]} == {"violation"}
    env.client.post(f"/api/v1/alerts/{alert['alert_id']}/close", headers=env.auth("analyst"), json={})
    closed = env.client.get("/api/v1/communications", headers=h).json()["items"]
    assert {e["policy"]["status"] for e in closed} == {"closed"}


def test_communications_without_alerts_are_allowed_under_a_policy_and_unknown_without(
    tmp_path: Path, make_env: Callable[..., ApiEnv]
) -> None:
    db = tmp_path / "quiet.db"
    replay([PCAPS / CAPTURES[0]], SensorConfig(db_path=db))  # no policy: no policy alert
    policy = tmp_path / "policy.yaml"
    policy.write_text(LOOPBACK_POLICY)
    for env, status in (
        (make_env(db_path=db, policy_path=policy), "allowed"),
        (make_env(db_path=db), "unknown"),
    ):
        edges = env.client.get("/api/v1/communications", headers=env.auth("viewer")).json()["items"]
        assert edges and all(e["policy"] == {"status": status, "alerts": []} for e in edges)


TWO_ZONES = """\
version: 1
default: deny
zones:
  - id: control
    members: [10.0.1.0/24]
  - id: scada
    members: [10.0.0.0/24]
conduits: []
"""


def test_one_alert_for_modbus_and_mqtt_without_a_conduit_marks_both_communications(
    tmp_path: Path, make_env: Callable[..., ApiEnv]
) -> None:
    from sensor.dissectors.modbus import codes
    from sensor.dissectors.modbus.events import ModbusRequest, ModbusTransaction
    from sensor.dissectors.mqtt import codes as mqtt_codes
    from sensor.dissectors.mqtt.events import MqttPacket
    from sensor.dissectors.mqtt.frames import Publish
    from sensor.records import FlowRef, FlowSummary
    from sensor.runtime import Sensor

    policy, db = tmp_path / "policy.yaml", tmp_path / "zw.db"
    policy.write_text(TWO_ZONES)
    hmi, plc = "10.0.0.5", "10.0.1.5"
    modbus = FlowRef(1, "1:a", "tcp", hmi, 40000, plc, 502)
    mqtt = FlowRef(2, "1:b", "tcp", hmi, 40001, plc, 1883)
    sensor = Sensor(SensorConfig(db_path=db, policy_path=policy))
    sinks = sensor.observers  # what the pipeline hands every event: inventory first, then the policy
    events: list[Any] = [
        ModbusTransaction(
            ts=1.0,
            flow=modbus,
            transaction_id=1,
            unit_id=1,
            function=3,
            function_name=codes.function_name(3),
            category=codes.category(3),
            code_class=codes.code_class(3),
            status="ok",
            request=ModbusRequest(function=3, address=0, quantity=2),
        ),
        MqttPacket(
            2.0,
            mqtt,
            True,
            mqtt_codes.PUBLISH,
            4,
            "hmi-1",
            Publish("plant/cmd", 0, False, False, 0, 1, "1", {}, 0),
        ),
        FlowSummary(modbus, 1.0, 3.0, 3, 3, 200, 200, "closed", "fin", app_proto="modbus"),
        FlowSummary(mqtt, 2.0, 4.0, 3, 3, 200, 200, "closed", "fin", app_proto="mqtt"),
    ]
    for event in events:
        for sink in sinks:
            sink.handle(event)
    sensor.finish()

    env = make_env(db_path=db, policy_path=policy)
    h = env.auth("viewer")
    [alert] = env.client.get("/api/v1/alerts", headers=h, params={"category": "policy"}).json()["items"]
    assert alert["rule"] == "policy:scada->control:no_conduit" and alert["count"] == 2
    assert alert["evidence"]["protocols"] == ["modbus", "mqtt"]
    edges = env.client.get("/api/v1/communications", headers=h).json()["items"]
    assert sorted((e["protocol"], e["port"], e["policy"]["status"]) for e in edges) == [
        ("modbus", 502, "violation"),
        ("mqtt", 1883, "violation"),
    ]
    for edge in edges:
        [group] = edge["policy"]["alerts"]
        assert (group["rule"], group["alerts"], group["count"]) == ("policy:scada->control:no_conduit", 1, 2)


def test_an_unidentified_flow_without_a_conduit_marks_its_tcp_communication(
    tmp_path: Path, make_env: Callable[..., ApiEnv]
) -> None:
    """No dissector claims a bare service or a port scan: the alert's app_proto stays empty (EVE: no
    application layer) while the inventory names the edge by its transport; the edge is still violating."""
    sys.path.insert(0, str(REPO / "tests" / "replay"))
    from builders import T0, Conversation, _write

    policy, db, pcap = tmp_path / "policy.yaml", tmp_path / "zw.db", tmp_path / "unknown.pcap"
    policy.write_text(TWO_ZONES)
    service = Conversation("10.0.0.5", "10.0.1.5", 40000, 9999).handshake()
    service.send(True, b"hello\r\n").send(False, b"world\r\n").close()
    scan = []
    for n, port in enumerate((21, 23, 80)):  # SYN, RST: one alert for the three (rule and host pair)
        probe = Conversation("10.0.0.6", "10.0.1.5", 41000 + n, port, t0=T0 + 10)
        probe.packets += [probe._pkt(True, "S"), probe._pkt(False, "RA")]
        scan.append(probe)
    _write(pcap, service, *scan)
    replay([pcap], SensorConfig(db_path=db, policy_path=policy))

    env = make_env(db_path=db, policy_path=policy)
    h = env.auth("viewer")
    alerts = env.client.get("/api/v1/alerts", headers=h, params={"category": "policy"}).json()["items"]
    assert sorted((a["src_ip"], a["dest_port"], a["app_proto"], a["count"]) for a in alerts) == [
        ("10.0.0.5", 9999, "", 1),
        ("10.0.0.6", 21, "", 3),
    ]
    assert all("app_proto" not in a["eve"] for a in alerts)  # EVE names no application layer
    edges = env.client.get("/api/v1/communications", headers=h).json()["items"]
    assert sorted((e["client"], e["protocol"], e["port"], e["policy"]["status"]) for e in edges) == [
        ("10.0.0.5", "tcp", 9999, "violation"),
        ("10.0.0.6", "tcp", 21, "violation"),
        ("10.0.0.6", "tcp", 23, "violation"),
        ("10.0.0.6", "tcp", 80, "violation"),
    ]
    for edge in edges:  # the scan's alert counts once on the port its row names, and on each other
        [group] = edge["policy"]["alerts"]
        assert (group["rule"], group["alerts"], group["open"]) == ("policy:scada->control:no_conduit", 1, 1)
        assert group["count"] == (1 if edge["port"] == 9999 else 3)
    detail = env.client.get("/api/v1/assets/10.0.0.5", headers=h).json()
    assert [e["policy"]["status"] for e in detail["edges"]] == ["violation"]


def test_edge_policy_status_is_one_query(judged: tuple[ApiEnv, dict[str, Any]]) -> None:
    env, _ = judged
    store = Store(env.settings.db_path, readonly=True)
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        edges = store.list_edges_with_policy()
    finally:
        store.close()
    assert len(edges) >= 4
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_observed_certificates_show_the_pki_judgement(judged: tuple[ApiEnv, dict[str, Any]]) -> None:
    env, _ = judged
    page = env.client.get("/api/v1/certificates/observed", headers=env.auth("viewer")).json()
    assert page["total"] >= 1
    for cert in page["items"]:
        assert cert["issued_here"] is False and cert["issued"] is None
        assert cert["presenters"] and cert["assets"] == [p["ip"] for p in cert["presenters"]]
        for presenter in cert["presenters"]:
            # the broker's certificate is not from this CA: unmanaged or self-signed, judged on the wire
            assert presenter["status"] in ("unmanaged", "self_signed"), presenter
            assert presenter["roles"] and set(presenter["roles"]) <= {"server", "client"}
            assert presenter["sources"] and presenter["first_seen"] and presenter["last_seen"]
        assert cert["status"] in {p["status"] for p in cert["presenters"]}
    status = page["items"][0]["presenters"][0]["status"]
    only = env.client.get(
        "/api/v1/certificates/observed", headers=env.auth("viewer"), params={"status": status}
    ).json()
    assert only["total"] >= 1
    none = env.client.get(
        "/api/v1/certificates/observed", headers=env.auth("viewer"), params={"status": "revoked_in_use"}
    ).json()
    assert none["total"] == 0


def test_observed_certificates_api_and_cli_read_the_same_rows(judged: tuple[ApiEnv, dict[str, Any]]) -> None:
    from api.pki.cli import _observed_certificates

    env, _ = judged
    cli_rows = _observed_certificates(env.settings.db_path, {})
    page = env.client.get("/api/v1/certificates/observed", headers=env.auth("viewer")).json()
    api_rows = {(c["sha256"], p["ip"]): p for c in page["items"] for p in c["presenters"]}
    assert {(r["sha256"], r["ip"]) for r in cli_rows} == set(api_rows)
    for row in cli_rows:
        presenter = api_rows[(row["sha256"], row["ip"])]
        assert (row["status"], row["roles"], row["findings"]) == (
            presenter["status"],
            presenter["roles"],
            presenter["findings"],
        )


def test_observed_certificates_without_a_pki_are_not_judged(
    make_env: Callable[..., ApiEnv], tmp_path: Path
) -> None:
    db = tmp_path / "plain.db"
    replay([PCAPS / "mqtt-tls-mosquitto.pcap"], SensorConfig(db_path=db))
    env = make_env(db_path=db)
    page = env.client.get("/api/v1/certificates/observed", headers=env.auth("viewer")).json()
    assert page["total"] >= 1 and {c["status"] for c in page["items"]} == {"not_judged"}


def test_serve_cert_expiry_days_reaches_the_sensor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sensor.runtime
    from api.serve import ServeOptions, serve
    from sensor.cli import build_parser

    args = build_parser().parse_args(["serve", "--cert-expiry-days", "90", "--replay", "x.pcap"])
    assert args.cert_expiry_days == 90
    assert build_parser().parse_args(["serve"]).cert_expiry_days == 30
    for bad in ("-1", "3651", "ten"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--cert-expiry-days", bad])

    seen: list[SensorConfig] = []

    class Stop(Exception):
        pass

    def fake_sensor(config: SensorConfig, *args: Any, **kwargs: Any) -> Any:
        seen.append(config)
        raise Stop

    monkeypatch.setattr(sensor.runtime, "Sensor", fake_sensor)
    with pytest.raises(Stop):
        serve(ServeOptions(db=tmp_path / "z.db", replay=[tmp_path / "x.pcap"], cert_expiry_days=90))
    assert seen[0].cert_expiring_days == 90
