"""The real server: ``zonewarden serve`` in a subprocess on 127.0.0.1 — replay into the store, tokens,
schemathesis against the live OpenAPI document, raw-path traversal (A13), slowloris (A16), SIGTERM."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from zw_paths import PCAPS, REPO
from zw_serve_support import ZONEWARDEN, Server, make_token
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
PASSPHRASE = "e2e serve passphrase 42\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("serve")
    (work / "policy.yaml").write_text(POLICY)
    rules_dir = work / "rules"  # a copy: the API edits enable.conf/disable.conf, never the package's
    rules_dir.mkdir()
    for path in (REPO / "rules").iterdir():
        if path.suffix in (".rules", ".conf", ".yaml"):
            shutil.copy(path, rules_dir / path.name)
    passfile = work / "pass"
    passfile.write_text(PASSPHRASE)
    passfile.chmod(0o600)
    subprocess.run(
        [
            *ZONEWARDEN,
            "pki",
            "init",
            "--dir",
            str(work / "pki"),
            "--passphrase-file",
            str(passfile),
            "--key",
            "ecdsa-p256",
            "--allow-ip",
            "127.0.0.0/8",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=60,
    )
    srv = Server(
        work / "zonewarden.db",
        [
            "--replay",
            str(PCAPS / "modbus-pymodbus-polling.pcap"),
            str(PCAPS / "mqtt-v311-mosquitto.pcap"),
            "--policy",
            str(work / "policy.yaml"),
            "--baseline",
            str(work / "baseline.json"),
            "--rules-dir",
            str(rules_dir),
            "--rules-data-dir",
            str(work / "rules-data"),
            "--pki-dir",
            str(work / "pki"),
            "--pki-passphrase-file",
            str(passfile),
            # schemathesis's ignored_auth check sends wrong tokens on purpose: do not lock it out.
            "--auth-failure-limit",
            "1000000",
            "--timeout-keep-alive",
            "2",
            "--limit-concurrency",
            "64",
        ],
        work / "serve.log",
    )
    try:
        yield srv
    finally:
        srv.stop()


def test_serve_replay_fills_the_store_and_api_shows_it(server: Server) -> None:
    token = make_token(server.db, "viewer")
    wait_for(lambda: server.get("/api/v1/status", token)["sensor"]["finished"])
    status = server.get("/api/v1/status", token)
    assert status["packets"] > 50 and status["sensor"]["mode"] == "replay"
    assert "modbus" in status["protocols"]
    assets = server.get("/api/v1/assets", token)
    assert assets["total"] == 1
    assert server.get("/api/v1/communications", token)["total"] >= 2
    assert server.get("/api/v1/alerts", token)["total"] >= 1
    assert server.get("/api/v1/pki/ca", token)["can_issue"] is True


def test_health_needs_no_token_and_everything_else_does(server: Server) -> None:
    assert server.request("GET", "/health")[0] == 200
    assert server.request("GET", "/api/v1/openapi.json")[0] == 401
    assert server.request("GET", "/api/v1/assets")[0] == 401


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/v1/pki/../../ca/ca.key",
        "/api/v1/pki/certificates/..%2f..%2fca.key",
        "/api/v1/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_A13_raw_traversal_paths_are_400(server: Server, raw_path: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_A16_slowloris_connections_are_closed_and_api_stays_up(server: Server) -> None:
    token = make_token(server.db, "viewer")
    idle = []
    for i in range(150):  # more than --limit-concurrency 64
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        if i % 2:
            s.sendall(b"GET /api/v1/status HTTP/1.1\r\nHo")  # a head that never completes
        idle.append(s)
    try:
        # The header deadline (10 s) closes every one of them.
        deadline = time.monotonic() + 20
        closed = 0
        for s in idle:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                if s.recv(1) == b"":
                    closed += 1
            except (TimeoutError, ConnectionResetError):
                pass
        assert closed == len(idle)
        assert server.get("/api/v1/status", token)["sensor"]["mode"] == "replay"
    finally:
        for s in idle:
            s.close()


def test_schemathesis_against_the_real_server(server: Server, tmp_path: Path) -> None:
    """Every operation, every check schemathesis has, zero failures (examples, coverage, fuzzing)."""
    tokens = {role: make_token(server.db, role) for role in ("admin", "pki-admin")}
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "zw_schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "e2e"), str(REPO / "tests"), str(REPO)]),
    }
    common = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.base}/api/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "12",
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--exclude-path",
        "/api/v1/alerts/stream",
        "--seed",
        "1",
        "--suppress-health-check",
        "all",
    ]
    # A CSR is opaque to a JSON schema: a schema-valid string that is not a certificate request is refused
    # with 400 and its reason (HOSTILE_INPUTS A11), which is the right answer, not a failure.
    csr_config = tmp_path / "schemathesis-pki.toml"
    csr_config.write_text(
        '[checks.positive_data_acceptance]\nexpected-statuses = ["2xx", "400", "401", "403", "404", "409"]\n'
    )
    # Policy text is opaque to a JSON schema too: schema-valid YAML that is not a valid policy is refused
    # with 422 and its file:line problems, which is the right answer for validate and replace.
    admin_config = tmp_path / "schemathesis-admin.toml"
    admin_config.write_text(
        "[[operations]]\n"
        'include-path-regex = "^/api/v1/policy(/validate)?$"\n'
        'include-method-regex = "^(PUT|POST)$"\n'
        "[operations.checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "401", "403", "404", "409", "422"]\n'
        # The alert list's time range is bounded (at most 10 years between since and until, HOSTILE_INPUTS
        # A8): a relation between two parameters that a JSON schema cannot state, so a schema-valid pair
        # further apart is refused with 422, which is the documented answer.
        "[[operations]]\n"
        'include-path-regex = "^/api/v1/alerts$"\n'
        "[operations.checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "401", "403", "422"]\n'
        # An asset name must be printable (no control or format characters such as U+00AD or U+202E,
        # sensor/assets/labels.py): Unicode categories a JSON schema pattern cannot name, so a
        # schema-valid name holding one is refused with 422 and its reason.
        "[[operations]]\n"
        'include-path-regex = "^/api/v1/assets/"\n'
        'include-method-regex = "^PATCH$"\n'
        "[operations.checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "401", "403", "404", "422"]\n'
    )
    runs = {
        # admin holds every permission but pki:write; pki-admin covers the PKI and EST writes.
        "admin": [
            *common[:3],
            "--config-file",
            str(admin_config),
            *common[3:],
            "-H",
            f"Authorization: Bearer {tokens['admin']}",
            "--exclude-tag",
            "est",
        ],
        "pki-admin": [
            *common[:3],
            "--config-file",
            str(csr_config),
            *common[3:],
            "-H",
            f"Authorization: Bearer {tokens['pki-admin']}",
            "--include-tag-regex",
            "^(pki|est)$",
        ],
    }
    for name, cmd in runs.items():
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        out = done.stdout + done.stderr
        (tmp_path / f"schemathesis-{name}.log").write_text(out)
        assert done.returncode == 0, out[-6000:]
        assert "Failures:" not in out and "Errors:" not in out, out[-6000:]


def test_sigterm_stops_within_ten_seconds(tmp_path: Path) -> None:
    srv = Server(
        tmp_path / "z.db", ["--replay", str(PCAPS / "modbus-pymodbus-polling.pcap")], tmp_path / "log"
    )
    code, took = srv.stop()
    assert code == 0 and took < 10, srv.log.read_text()


def test_module_server_stops_on_sigterm_after_all_that(server: Server) -> None:
    """After schemathesis, slowloris and the rest, SIGTERM still drains and exits within 10 s."""
    code, took = server.stop()
    assert code == 0 and took < 10, server.log.read_text()[-3000:]
