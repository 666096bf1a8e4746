"""The sample-capture generators still work: real stacks on loopback, recorded, then replayed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from zw_paths import REPO

from sensor.cli import main

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("tcpdump") is None, reason="needs root and tcpdump to record on lo"
)


def test_modbus_generator_records_a_real_pymodbus_conversation(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pcaps.generate.modbus_gen",
            "--out",
            str(tmp_path),
            "modbus-pymodbus-polling.pcap",
        ],
        cwd=REPO,
        check=True,
        timeout=120,
    )
    pcap = tmp_path / "modbus-pymodbus-polling.pcap"
    summary = tmp_path / "summary.json"
    assert main(["replay", "-q", str(pcap), "--summary-json", str(summary)]) == 0
    modbus = json.loads(summary.read_text())["modbus"]
    # 8 polling rounds of FC3, FC1 and FC4 (see pcaps/README.md), every one answered
    assert modbus["requests_by_function"] == {"1": 8, "3": 8, "4": 8}
    assert modbus["responses_by_function"] == {"1": 8, "3": 8, "4": 8}
    assert modbus["anomalies_by_kind"] == {}


def test_attack_generator_records_a_write_burst_the_sensor_detects(tmp_path: Path) -> None:
    """pcaps/generate/attacks_gen.py (real pymodbus stacks, ten seconds of traffic) makes the capture the
    replay case attack_modbus_write_burst reads; regenerated, it must still show one write burst and
    nothing else after learning the normal part."""
    name = "attack-modbus-write-burst.pcap.gz"
    subprocess.run(
        [sys.executable, "-m", "pcaps.generate.attacks_gen", "--out", str(tmp_path), name],
        cwd=REPO,
        check=True,
        timeout=180,
    )
    eve = tmp_path / "eve.json"
    pcap = tmp_path / name
    assert main(["replay", "-q", str(pcap), "--learn-for", "5", "--eve", str(eve)]) == 0
    alerts = [
        event["zonewarden"]["rule"]
        for event in map(json.loads, eve.read_text().splitlines())
        if event["event_type"] == "alert"
    ]
    assert alerts == ["anomaly:modbus_write_burst"]
