"""Suricata EVE alerts into zonewarden's alert stream; hostile lines are counted, never raised."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

from rules.eve_ingest import EveIngester, follow, ingest_file
from sensor.records import Alert

SURICATA_ALERT = {
    "timestamp": "2023-11-14T22:13:20.123456+0000",
    "flow_id": 1234,
    "event_type": "alert",
    "src_ip": "10.0.0.5",
    "src_port": 40000,
    "dest_ip": "10.0.0.9",
    "dest_port": 502,
    "proto": "TCP",
    "app_proto": "modbus",
    "community_id": "1:abc",
    "alert": {
        "action": "allowed",
        "gid": 1,
        "signature_id": 2250005,
        "rev": 2,
        "signature": "SURICATA Modbus invalid Length",
        "category": "Generic Protocol Command Decode",
        "severity": 3,
        "metadata": {"mitre_technique_id": ["T0814"]},
    },
}


def test_alerts_become_zonewarden_alerts(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    lines = [
        json.dumps(SURICATA_ALERT),
        json.dumps({"event_type": "flow"}),
        "not json",
        "[1,2]",
        '{"event_type": "alert"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    alerts: list[Alert] = []
    counters = ingest_file(path, alerts.append)
    assert dict(counters) == {"lines": 5, "alerts": 1, "other_events": 1, "not_json": 2, "bad_alerts": 1}
    (a,) = alerts
    assert (a.rule, a.signature_id, a.rev, a.severity, a.app_proto, a.mitre) == (
        "1:2250005:2",
        2250005,
        2,
        3,
        "modbus",
        ("T0814",),
    )
    assert a.flow is not None and a.flow.server_port == 502
    assert a.ts == 1700000000.123456
    assert a.evidence["source"] == "suricata"
    again: list[Alert] = []
    ingest_file(path, again.append)
    assert again[0].alert_id == a.alert_id  # deterministic: a second ingest duplicates nothing


def test_overlong_line_is_skipped_without_being_held() -> None:
    alerts: list[Alert] = []
    ing = EveIngester(alerts.append, max_line=600)
    ing.read(io.BytesIO(b"x" * 5000 + b"\n" + json.dumps(SURICATA_ALERT).encode() + b"\n"))
    assert (ing.counters["too_long"], ing.counters["alerts"], len(alerts)) == (1, 1, 1)


def test_follow_reads_appended_alerts(tmp_path: Path) -> None:
    path = tmp_path / "eve.json"
    path.write_text(json.dumps(SURICATA_ALERT) + "\n")  # already there: not re-read when following
    alerts: list[Alert] = []
    done = threading.Event()
    thread = threading.Thread(target=lambda: follow(path, alerts.append, done.is_set, poll=0.01))
    thread.start()
    try:
        time.sleep(0.1)
        with path.open("a") as fh:
            fh.write(json.dumps({**SURICATA_ALERT, "timestamp": "2023-11-14T22:13:21.000000+0000"}) + "\n")
        deadline = time.monotonic() + 5
        while not alerts and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        done.set()
        thread.join()
    assert [a.ts for a in alerts] == [1700000001.0]
