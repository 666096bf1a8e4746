"""sensor/live.py, the one runner of ``zonewarden sniff`` and ``serve --sniff/--replay``: a followed Suricata
EVE file stored like the sensor's own alerts, the policy file watcher and ``PUT /policy`` swapping each
version once, and, on a real veth pair (root), live capture with --learn-for/--baseline/--follow-eve
through the CLI and tshark beside the capture identifying DNP3 and BACnet for the inventory."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_deep_identify import BACNET_DEVICE_INSTANCE, DNP3_MASTER, bacnet_capture, dnp3_capture
from zw_paths import PCAPS, REPO
from zw_veth import tx_packets, veth_pair
from zw_wait import wait_for

from sensor.deep import tshark_available
from sensor.live import LiveRunner
from sensor.runtime import Sensor, SensorConfig

MODBUS = PCAPS / "modbus-pymodbus-polling.pcap"

LOOPBACK_DENY = """\
version: 1
site: loopback
default: deny
zones:
  - id: loopback
    members: [127.0.0.0/8]
    intra_zone: deny
conduits: []
"""
LOOPBACK_ALLOW = LOOPBACK_DENY.replace("intra_zone: deny", "intra_zone: allow")


def suricata_alert(sid: int, second: int) -> str:
    """One Suricata EVE alert line (Suricata 7 eve.json layout)."""
    record = {
        "timestamp": f"2023-11-14T22:13:{second:02d}.000000+0000",
        "flow_id": 1234567,
        "event_type": "alert",
        "src_ip": "10.9.0.5",
        "src_port": 40000,
        "dest_ip": "10.9.0.6",
        "dest_port": 502,
        "proto": "TCP",
        "app_proto": "modbus",
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": sid,
            "rev": 1,
            "signature": f"suricata test {sid}",
            "category": "Attempted Administrator Privilege Gain",
            "severity": 1,
        },
    }
    return json.dumps(record) + "\n"


def stored(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Read the store from another connection, as the API does (WAL: readers never block the sensor)."""
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# No root needed: a replay kept open by a followed EVE file
# --------------------------------------------------------------------------------------------------


def test_followed_eve_alerts_join_the_alert_stream_and_the_store(tmp_path: Path) -> None:
    db, eve, out = tmp_path / "zw.db", tmp_path / "suricata" / "eve.json", tmp_path / "out.json"
    sensor = Sensor(SensorConfig(db_path=db, eve_path=out))
    runner = LiveRunner(sensor, paths=[MODBUS], follow_eve=eve, flush_interval=0.1)
    runner.start()
    try:
        wait_for(lambda: runner.status()["summary"].get("packets") == 58)
        assert runner.status()["sensor"]["finished"] is False  # kept open for the followed file
        eve.parent.mkdir()
        eve.write_text(suricata_alert(2000001, 1))  # made after the start: read from its first line
        wait_for(lambda: stored(db, "SELECT rule FROM alerts WHERE rule = ?", "1:2000001:1"))
        with eve.open("a") as fh:  # appended while the sensor runs
            fh.write('{"event_type": "flow"}\nnot json\n' + suricata_alert(2000002, 2))
        wait_for(lambda: stored(db, "SELECT rule FROM alerts WHERE rule = ?", "1:2000002:1"))
    finally:
        assert runner.stop()
    rows = stored(db, "SELECT rule, src_ip, evidence FROM alerts WHERE category = 'signature' ORDER BY rule")
    assert [(r[0], r[1]) for r in rows] == [("1:2000001:1", "10.9.0.5"), ("1:2000002:1", "10.9.0.5")]
    assert all(json.loads(r[2])["source"] == "suricata" for r in rows)
    summary = runner.final_summary
    assert summary is not None and summary["alerts"]["by_rule"]["1:2000002:1"] == 1
    follow = summary["live"]["eve_follow"]
    assert (follow["alerts"], follow["not_json"], follow["other_events"]) == (2, 1, 1)
    # delivered like the sensor's own: the EVE output has both
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(1 for r in written if r.get("alert", {}).get("signature_id") in (2000001, 2000002)) == 2


def test_alert_after_the_store_closed_is_counted_not_written(tmp_path: Path) -> None:
    sensor = Sensor(SensorConfig(db_path=tmp_path / "zw.db"))
    runner = LiveRunner(sensor, paths=[MODBUS])
    runner.start()
    assert runner.finished.wait(30) and runner.error is None
    from rules.eve_ingest import alert_from_eve

    alert = alert_from_eve(json.loads(suricata_alert(2000003, 3)))
    assert alert is not None
    runner.publish(alert)
    assert runner.eve_alerts_dropped == 1 and "1:2000003:1" not in sensor.alerts.by_rule


def test_policy_file_watcher_and_api_reload_swap_each_version_once(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(LOOPBACK_DENY)
    sensor = Sensor(SensorConfig(db_path=tmp_path / "zw.db", policy_path=policy))
    runner = LiveRunner(sensor, paths=[MODBUS], follow_eve=tmp_path / "none.json", policy_interval=0.05)
    observer, watcher = sensor.policy, runner.policy_watcher
    assert observer is not None and watcher is not None
    runner.start()
    try:
        running = observer.policy
        policy.write_text(LOOPBACK_ALLOW.replace("to: loopback", "to: nowhere") + "conduits: [oops\n")
        wait_for(lambda: watcher.failures == 1)
        assert observer.policy is running and observer.reloads == 0  # refused, the old one runs
        assert "policy.yaml" in watcher.last_error

        policy.write_text(LOOPBACK_ALLOW)  # the watcher sees it first ...
        wait_for(lambda: observer.reloads == 1)
        assert observer.policy is not running
        assert runner.reload_policy() is True  # ... then PUT /policy asks: no second swap
        assert observer.reloads == 1

        policy.write_text(LOOPBACK_DENY + "# v3\n")  # PUT /policy first: the watcher then sees nothing new
        assert runner.reload_policy() is True
        time.sleep(0.3)  # several watcher rounds
        assert observer.reloads == 2 and watcher.reloads == 2
    finally:
        assert runner.stop()
    assert runner.final_summary is not None
    assert runner.final_summary["live"]["policy"] == {
        "watched": True,
        "reloads": 2,
        "refused": 1,
        "last_error": "",
    }


# --------------------------------------------------------------------------------------------------
# Root: a real veth pair
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    with veth_pair("zwl", ("tcpreplay",)) as ends:
        yield ends


def tcpreplay(interface: str, *captures: Path, pace: tuple[str, ...] = ("--mbps", "10")) -> int:
    """Send the captures; ``pace=()`` keeps their own timing (packet time then spans as in the file)."""
    out = subprocess.run(
        ["tcpreplay", "-i", interface, *pace, *map(str, captures)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return sum(int(part.split(" packets")[0]) for part in out.split("Actual: ")[1:])


@pytest.mark.needs_root
def test_sniff_cli_learns_saves_the_baseline_and_follows_eve(veth: tuple[str, str], tmp_path: Path) -> None:
    capture_end, send_end = veth
    db, baseline, eve, summary = (tmp_path / n for n in ("zw.db", "baseline.json", "eve.json", "sum.json"))
    eve.write_text(suricata_alert(2000009, 9))  # there before the start: not read again (tail -f)
    log = tmp_path / "sniff.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "sensor.cli", "-v", "sniff", "-i", capture_end, "--db", str(db)),
                *("--learn-for", "0.05", "--baseline", str(baseline), "--follow-eve", str(eve)),
                *("--summary-json", str(summary)),
            ],
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: b"capturing on" in log.read_bytes() or proc.poll() is not None)
            tx_before = tx_packets(capture_end)
            assert tcpreplay(send_end, MODBUS, pace=()) == 58  # 0.19 s of polling at its own pace
            with eve.open("a") as fh:
                fh.write(suricata_alert(2000010, 10))
            wait_for(lambda: stored(db, "SELECT rule FROM alerts WHERE rule = ?", "1:2000010:1"))
        finally:
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = proc.wait(15)
    took = time.monotonic() - started
    assert code == 0 and took < 10, log.read_text()[-3000:]
    doc = json.loads(summary.read_text())
    assert doc["capture"]["packets"] >= 58 and doc["modbus"]["transactions"] == 24
    # learning in packet time: 0.05 s of the 0.19 s polling, then detection; saved at shutdown
    assert doc["baseline"]["mode"] == "detecting" and doc["baseline"]["learned_until"] is not None
    saved = json.loads(baseline.read_text())
    assert saved and baseline.stat().st_size > 100
    follow = doc["live"]["eve_follow"]
    assert follow["alerts"] == 1 and doc["alerts"]["by_rule"]["1:2000010:1"] == 1
    assert "1:2000009:1" not in doc["alerts"]["by_rule"]
    assert tx_packets(capture_end) == tx_before, "the sensor transmitted on the capture interface"


@pytest.mark.needs_root
@pytest.mark.skipif(not tshark_available(), reason="tshark is not installed (apt install tshark)")
def test_live_deep_identifies_dnp3_and_bacnet_beside_capture(veth: tuple[str, str], tmp_path: Path) -> None:
    capture_end, send_end = veth
    dnp3, bacnet, db = tmp_path / "dnp3.pcap", tmp_path / "bacnet.pcap", tmp_path / "zw.db"
    sent = dnp3_capture(dnp3)["packets"] + bacnet_capture(bacnet)["packets"]
    sensor = Sensor(SensorConfig(db_path=db))
    runner = LiveRunner(sensor, interface=capture_end, deep=True, flush_interval=0.1, deep_interval=0.2)
    runner.start()
    try:
        scan = runner.deep_scan
        assert scan is not None and scan.error is None
        assert scan.ready.wait(30), "dumpcap did not start capturing"
        tx_before = tx_packets(capture_end)
        assert tcpreplay(send_end, dnp3, bacnet) == sent
        wait_for(lambda: runner.summary().get("other_protocols") == {"bacnet": 1, "dnp3": 1})
        # handed to the inventory and committed while running, not only at the end
        wait_for(lambda: stored(db, "SELECT 1 FROM edges WHERE protocol = 'dnp3'"))
    finally:
        assert runner.stop()
    assert runner.error is None
    summary = runner.final_summary
    assert summary is not None and summary["other_protocols"] == {"bacnet": 1, "dnp3": 1}
    assert summary["live"]["deep"]["error"] is None and summary["live"]["deep"]["packets"] >= sent
    edges = stored(db, "SELECT client_ip, server_ip, protocol, port FROM edges ORDER BY protocol")
    assert ("10.0.0.1", "10.0.0.2", "dnp3", 20000) in edges
    assert any(e[2] == "bacnet" and e[3] == 47808 for e in edges)
    assert not [e for e in edges if e[1] == "10.0.0.2" and e[2] != "dnp3"], edges  # native edge renamed
    outstation = sensor.inventory.inventory.get("10.0.0.2")
    assert outstation is not None and "dnp3" in outstation.protocols
    assert outstation.identity.get("dnp3.master_address") == str(DNP3_MASTER)
    device = sensor.inventory.inventory.get("10.0.1.2")
    assert device is not None and outstation is not None
    assert device.identity.get("bacnet.device_instance") == str(BACNET_DEVICE_INSTANCE)
    assert tx_packets(capture_end) == tx_before


@pytest.mark.needs_root
def test_live_queue_drops_reach_status_and_store_before_stop(veth: tuple[str, str], tmp_path: Path) -> None:
    from sensor.limits import Limits

    capture_end, send_end = veth
    db = tmp_path / "zw.db"
    sensor = Sensor(SensorConfig(db_path=db, limits=Limits(capture_queue_frames=4)))
    runner = LiveRunner(sensor, interface=capture_end, flush_interval=0.1)
    runner.start()
    try:
        source = runner.source
        # Holding the runner's lock stalls the pipeline: the capture queue (4) fills and the rest drops.
        with runner.lock:
            assert tcpreplay(send_end, MODBUS) == 58
            wait_for(lambda: source.counters.packets >= 58)
        drops = source.counters.queue_drops
        # four queued, and one more taken by the pipeline thread if it ran before the queue filled
        assert source.counters.packets - 5 <= drops <= source.counters.packets - 4
        assert drops > 0
        status = runner.status()
        assert status["sensor"]["running"] and status["summary"]["capture"]["queue_drops"] == drops
        # the flush thread's commits carry them: GET /api/v1/status of a server reading this store
        query = "SELECT value FROM counters WHERE name = '/summary/capture/queue_drops'"
        wait_for(lambda: stored(db, query) == [(drops,)])
        assert not runner.finished.is_set()
    finally:
        assert runner.stop()
    assert runner.error is None and runner.final_summary is not None
    assert runner.final_summary["capture"]["queue_drops"] == drops  # counted once after the source closed
    assert runner.final_summary["capture"]["packets"] == source.counters.packets
    assert stored(db, query) == [(drops,)]
