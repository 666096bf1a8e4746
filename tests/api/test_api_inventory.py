"""Assets, communications, graph, observed certificates and alerts over a store filled by a real replay."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from zw_api_env import ApiEnv
from zw_paths import PCAPS

from sensor.runtime import SensorConfig, replay

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


@pytest.fixture
def filled(make_env: Callable[..., ApiEnv], tmp_path: Path) -> ApiEnv:
    policy = tmp_path / "policy.yaml"
    policy.write_text(LOOPBACK_POLICY)
    db = tmp_path / "zonewarden.db"
    pcaps = [
        PCAPS / n
        for n in ("modbus-pymodbus-polling.pcap", "mqtt-v311-mosquitto.pcap", "mqtt-tls-mosquitto.pcap")
    ]
    summary, _ = replay(pcaps, SensorConfig(db_path=db, policy_path=policy))
    assert summary["alerts"]["total"] > 0
    return make_env(db_path=db, policy_path=policy)


def test_assets_list_filter_search_and_detail(filled: ApiEnv) -> None:
    h = filled.auth("viewer")
    page = filled.client.get("/api/v1/assets", headers=h).json()
    assert page["total"] == 1 and page["items"][0]["ip"] == "127.0.0.1"
    assert page["items"][0]["zone"] == "loopback"
    assert filled.client.get("/api/v1/assets", headers=h, params={"protocol": "modbus"}).json()["total"] == 1
    assert filled.client.get("/api/v1/assets", headers=h, params={"protocol": "opcua"}).json()["total"] == 0
    assert (
        filled.client.get("/api/v1/assets", headers=h, params={"role": "modbus_server"}).json()["total"] == 1
    )
    assert filled.client.get("/api/v1/assets", headers=h, params={"zone": "elsewhere"}).json()["total"] == 0
    assert filled.client.get("/api/v1/assets", headers=h, params={"q": "127.0"}).json()["total"] == 1
    assert filled.client.get("/api/v1/assets", headers=h, params={"q": "(a+)+$"}).json()["total"] == 0
    one = filled.client.get("/api/v1/assets/127.0.0.1", headers=h).json()
    assert "modbus_server" in one["roles"] and one["modbus_map"]
    assert any(e["protocol"] == "modbus" for e in one["edges"])
    assert one["certificates"]  # the broker's TLS certificate


@pytest.mark.parametrize("ip", ["10.99.99.99", "not-an-ip", "::2"])
def test_A4_unknown_asset_is_404(filled: ApiEnv, ip: str) -> None:
    r = filled.client.get(f"/api/v1/assets/{ip}", headers=filled.auth("viewer"))
    assert r.status_code == 404 and r.json()["error"] == {"code": "not_found", "message": "no such asset"}


def test_communications_and_graph(filled: ApiEnv) -> None:
    h = filled.auth("viewer")
    edges = filled.client.get("/api/v1/communications", headers=h, params={"protocol": "modbus"}).json()
    assert edges["total"] == 1
    ops = edges["items"][0]["operations"]
    assert ops, edges
    graph = filled.client.get("/api/v1/graph", headers=h).json()
    assert {n["id"] for n in graph["nodes"]} == {"127.0.0.1"}
    assert {e["protocol"] for e in graph["edges"]} >= {"modbus", "mqtt", "tls"}
    only = filled.client.get("/api/v1/graph", headers=h, params={"protocol": "mqtt"}).json()
    assert {e["protocol"] for e in only["edges"]} == {"mqtt"}
    r = filled.client.get("/api/v1/graph.graphml", headers=h)
    assert r.status_code == 200 and r.content.startswith(b"<graphml") and b"<edge" in r.content
    assert "attachment" in r.headers["content-disposition"]


def test_observed_certificates(filled: ApiEnv) -> None:
    page = filled.client.get("/api/v1/certificates/observed", headers=filled.auth("viewer")).json()
    assert page["total"] >= 1
    assert all(c["issued_here"] is False for c in page["items"])
    assert any("tls" in s for c in page["items"] for s in c["sources"])


def test_alerts_list_get_ack_close_audited(filled: ApiEnv) -> None:
    h = filled.auth("viewer")
    page = filled.client.get("/api/v1/alerts", headers=h, params={"status": "open", "limit": 1}).json()
    assert len(page["items"]) == 1 and page["total"] >= 1
    alert_id = page["items"][0]["alert_id"]
    assert filled.client.get(f"/api/v1/alerts/{alert_id}", headers=h).json()["rule"].startswith("policy:")

    analyst = filled.auth("analyst")
    assert filled.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=h, json={}).status_code == 403
    r = filled.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=analyst, json={"comment": "looking"})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    again = filled.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=analyst, json={"comment": "x"})
    assert again.status_code == 409
    r = filled.client.post(
        f"/api/v1/alerts/{alert_id}/close", headers=analyst, json={"comment": "maintenance"}
    )
    assert r.status_code == 200 and r.json()["status"] == "closed" and r.json()["note"] == "maintenance"
    missing = filled.client.post("/api/v1/alerts/ffffffffffffffff/ack", headers=analyst, json={})
    assert missing.status_code == 404
    rows = filled.audit_rows()
    assert [r[1] for r in rows if r[1].startswith("alerts.")] == [
        "alerts.ack",
        "alerts.ack",
        "alerts.close",
        "alerts.ack",
    ]
    assert rows[-2][3] == "ok 200: maintenance"


def test_alert_stream_sends_existing_alerts_as_events(filled: ApiEnv) -> None:
    with filled.client.stream(
        "GET", "/api/v1/alerts/stream", headers=filled.auth("viewer"), params={"since": "0", "wait": "0"}
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [block for block in body.split("\n\n") if block.startswith("id: ")]
    assert len(events) == filled.client.get("/api/v1/alerts", headers=filled.auth("viewer")).json()["total"]
    first = events[0].split("\n")
    assert first[1] == "event: alert"
    assert json.loads(first[2][len("data: ") :])["category"] == "policy"


def test_status_without_sensor(filled: ApiEnv) -> None:
    doc = filled.client.get("/api/v1/status", headers=filled.auth("viewer")).json()
    assert doc["sensor"]["mode"] == "none" and doc["versions"]["zonewarden"]
