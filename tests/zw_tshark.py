"""tshark as the oracle of tests: what Wireshark counts in a capture (importable from any test)."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path


def modbus_function_codes(path: Path) -> Counter[str]:
    """Modbus function codes tshark reads in ``path``, requests and responses, with their counts."""
    run = subprocess.run(
        ["tshark", "-r", str(path), "-n", "-Y", "modbus", "-T", "fields", "-e", "modbus.func_code"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return Counter(code for line in run.stdout.split() for code in line.split(","))
