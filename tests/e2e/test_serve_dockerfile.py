"""No Docker engine runs here: check that what the Dockerfile runs works — its ``pip install`` of the
project into a fresh virtualenv, then its CMD (with loopback instead of 0.0.0.0 and a temporary data
directory) answering its HEALTHCHECK — and that the image is built the way the appliance needs."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from zw_paths import REPO
from zw_serve_support import free_port

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    if args.startswith("CMD "):
        args = args[4:].strip()
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_dockerfile_shape() -> None:
    steps = instructions()
    kinds = [k for k, _ in steps]
    assert steps[0][0] == "FROM" and "slim" in steps[0][1]
    run = " ".join(a for k, a in steps if k == "RUN")
    assert "tshark" in run and "setcap cap_net_raw,cap_net_admin+eip" in run
    assert "useradd" in run
    user = [a for k, a in steps if k == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert "VOLUME" in kinds and "HEALTHCHECK" in kinds
    health = next(a for k, a in steps if k == "HEALTHCHECK")
    assert "/health" in health
    cmd = exec_form(next(a for k, a in steps if k == "CMD"))
    assert cmd[1] == "serve"


@pytest.mark.slow
def test_dockerfile_install_and_cmd_work_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    steps = instructions()
    install = next(a for k, a in steps if k == "RUN" and "pip install" in a)
    workdir = next(a for k, a in steps if k == "WORKDIR")
    venv = tmp_path / "venv"
    # The RUN line, with the image's paths mapped onto this checkout and a temporary venv.
    command = install.replace("/opt/venv", str(venv)).replace(workdir, str(REPO))
    command = command.replace("python -m venv", f"{shlex.quote(sys.executable)} -m venv")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    cmd = exec_form(next(a for k, a in steps if k == "CMD"))
    cmd = [c.replace("/opt/venv", str(venv)) for c in cmd]
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    cmd = [
        c.replace("0.0.0.0", "127.0.0.1").replace("8000", str(port)).replace("/var/lib/zonewarden", str(data))
        for c in cmd
    ]
    health = exec_form(next(a for k, a in steps if k == "HEALTHCHECK").split(" CMD ", 1)[1])
    health = [h.replace("/opt/venv", str(venv)).replace("8000", str(port)) for h in health]

    # The fresh venv must not see this checkout: run from elsewhere with a clean environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            if subprocess.run(health, cwd=tmp_path, env=env, capture_output=True, timeout=10).returncode == 0:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the HEALTHCHECK never passed")
        where = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import api; print(api.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        assert str(venv) in where  # the installed package, not this checkout
        token = subprocess.run(
            [
                str(venv / "bin" / "zonewarden"),
                "tokens",
                "create",
                "--role",
                "viewer",
                "--db",
                str(data / "zonewarden.db"),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        assert token.startswith("zw_")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert proc.returncode == 0
