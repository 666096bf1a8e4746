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
