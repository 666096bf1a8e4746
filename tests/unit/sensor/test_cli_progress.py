"""`zonewarden replay` shows a progress bar on a terminal (issue 2) and none when stderr is not one."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from zw_paths import PCAPS, REPO

from sensor.cli import Progress
from sensor.records import Frame


def test_progress_bar_follows_files_and_bytes() -> None:
    out = io.StringIO()
    paths = [PCAPS / "modbus-pymodbus-polling.pcap", PCAPS / "modbus-pymodbus-device-id.pcap"]
    bar = Progress(out, paths)
    bar.start_file(paths[0])
    for _ in range(2048):
        bar.frame(Frame(0.0, 1, b"x" * 60, 60))
    bar.start_file(paths[1])
    bar.done()
    text = out.getvalue()
    assert "file 1/2 modbus-pymodbus-polling.pcap" in text
    assert "file 2/2 modbus-pymodbus-device-id.pcap" in text
    assert "100.0%" in text and "2048 pkts" in text
    assert text.endswith("\n")


def test_replay_draws_the_bar_on_a_terminal_only(tmp_path: Path) -> None:
    pcap = str(PCAPS / "modbus-pymodbus-polling.pcap")
    cmd = [sys.executable, "-m", "sensor.cli", "replay", pcap, "--summary-json", str(tmp_path / "s.json")]
    piped = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "file 1/1" not in piped.stderr
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(cmd, cwd=REPO, stderr=follower, stdout=subprocess.DEVNULL, timeout=60)
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert b"file 1/1 modbus-pymodbus-polling.pcap" in shown and b"100.0%" in shown


def test_the_bar_ends_when_tshark_starts_and_is_not_drawn_twice() -> None:
    out = io.StringIO()
    paths = [PCAPS / "modbus-pymodbus-polling.pcap"]
    bar = Progress(out, paths)
    bar.tshark()  # --deep with a policy: tshark first, no bar yet
    assert out.getvalue() == "tshark: naming the other protocols in 1 file(s)...\n"
    bar.start_file(paths[0])
    bar.frame(Frame(0.0, 1, b"x" * 60, 60))
    bar.tshark()  # --deep alone: after the pass, whose bar ends first
    bar.done()
    lines = out.getvalue().split("\n")
    assert "100.0%" in lines[1] and lines[2:] == ["tshark: naming the other protocols in 1 file(s)...", ""]
