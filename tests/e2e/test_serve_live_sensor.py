"""``zonewarden serve`` with the live sensor's features (sensor/live.py): a followed Suricata EVE file whose
alerts reach the API, the policy hot reload through ``PUT /policy`` with the file watcher running,
``--learn-for``/``--baseline`` with the baseline saved at SIGTERM, all within the 10 s stop."""

from __future__ import annotations

import json
from pathlib import Path

from zw_paths import PCAPS
from zw_serve_support import Server, make_token
from zw_wait import wait_for

POLICY = """\
version: 1
site: loopback
default: deny
zones:
  - id: loopback
    members: [127.0.0.0/8]
    intra_zone: deny
conduits: []
"""
SURICATA_ALERT = {
    "timestamp": "2023-11-14T22:13:20.000000+0000",
    "event_type": "alert",
    "src_ip": "10.9.0.5",
    "src_port": 40000,
    "dest_ip": "10.9.0.6",
    "dest_port": 502,
    "proto": "TCP",
    "alert": {"gid": 1, "signature_id": 2000001, "rev": 1, "signature": "suricata e2e", "severity": 1},
}


def test_serve_follows_eve_reloads_policy_once_and_saves_the_baseline(tmp_path: Path) -> None:
    policy, eve, baseline = tmp_path / "policy.yaml", tmp_path / "eve.json", tmp_path / "baseline.json"
    policy.write_text(POLICY)
    server = Server(
        tmp_path / "zw.db",
        [
            *("--replay", str(PCAPS / "modbus-pymodbus-polling.pcap")),
            *("--policy", str(policy), "--follow-eve", str(eve)),
            *("--learn-for", "0.05", "--baseline", str(baseline)),
        ],
        tmp_path / "serve.log",
    )
    try:
        viewer, admin = make_token(server.db, "viewer"), make_token(server.db, "admin")
        wait_for(lambda: server.get("/api/v1/status", viewer)["packets"] == 58)
        assert server.get("/api/v1/status", viewer)["sensor"]["running"] is True  # open for the EVE file

        eve.write_text(json.dumps(SURICATA_ALERT) + "\n")

        def suricata_alerts() -> list[dict[str, object]]:
            items = server.get("/api/v1/alerts?limit=100", viewer)["items"]
            return [a for a in items if a["rule"] == "1:2000001:1"]

        wait_for(suricata_alerts)
        assert suricata_alerts()[0]["category"] == "signature"

        allow = POLICY.replace("intra_zone: deny", "intra_zone: allow")
        status, doc = server.request("PUT", "/api/v1/policy", admin, {"yaml": allow, "comment": "e2e"})
        assert status == 200, doc
        assert doc["reloaded"] is True and doc["sensor_reloads"] == 1
    finally:
        code, took = server.stop()
    assert code == 0 and took < 10, server.log.read_text()[-3000:]
    saved = json.loads(baseline.read_text())
    assert saved, "the baseline was not saved at shutdown"
