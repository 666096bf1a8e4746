"""Every atheris target (atheris_targets.py) runs: its seeds cut from real captures, then a few hundred
coverage-guided mutations, with nothing escaping but the project's own errors. Long campaigns are
``make fuzz``; this keeps the harnesses working and their seeds clean in every ``make test``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris has wheels for x86_64 Linux only")

HARNESS = Path(__file__).with_name("atheris_targets.py")

# mutations per target, so that each run takes a few seconds on CI's machine
RUNS = {
    "capture": 3000,
    "pipeline": 120,
    "modbus": 150,
    "opcua": 100,
    "mqtt": 600,
    "tls": 3000,
    "rules": 1500,
    "policy": 2000,
}


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(RUNS))
def test_atheris_target_survives_seeds_and_mutations(target: str, tmp_path: Path) -> None:
    runs = RUNS[target]
    done = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            target,
            "--seeds",
            str(tmp_path / "seeds"),
            "--workdir",
            str(tmp_path),
            f"-runs={runs}",
            "-seed=1",
            "-timeout=60",
            "-rss_limit_mb=1536",
            "-print_final_stats=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert f"Done {runs} runs" in log, log[-2000:]
    assert not list(tmp_path.glob("crash-*")), log[-4000:]
    assert any((tmp_path / "seeds").iterdir()), "no seed was cut from the captures"
