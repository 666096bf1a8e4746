"""Live SPAN capture for real: a veth pair with one end in a network namespace, ``zonewarden serve --sniff``
on the root-namespace end, tcpreplay into the other end; everything checked through the API, and the
capture interface must not have transmitted a single frame. Needs root (as CI runs) and iproute2 +
tcpreplay; skips cleanly otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from zw_paths import PCAPS
from zw_serve_support import Server, make_token
from zw_veth import tx_packets
from zw_wait import wait_for

pytestmark = pytest.mark.needs_root

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
CAPTURE = PCAPS / "modbus-pymodbus-polling.pcap"


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture
def veth() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and a veth pair")
    for tool in ("ip", "tcpreplay", "sysctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    tag = uuid.uuid4().hex[:6]
    ns, sensor_end, peer_end = f"zwns{tag}", f"zws{tag}", f"zwp{tag}"
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", sensor_end, "type", "veth", "peer", "name", peer_end)
        # The kernel itself must send nothing on the capture end: no IPv6 (no DAD, no router solicits).
        run("sysctl", "-q", "-w", f"net.ipv6.conf.{sensor_end}.disable_ipv6=1")
        run("ip", "link", "set", peer_end, "netns", ns)
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{peer_end}.disable_ipv6=1")
        run("ip", "link", "set", sensor_end, "up")
        run("ip", "netns", "exec", ns, "ip", "link", "set", peer_end, "up")
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "link", "del", sensor_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        pytest.skip(f"cannot make a veth pair here: {exc.stderr.strip()}")
    try:
        yield ns, sensor_end, peer_end
    finally:
        subprocess.run(["ip", "link", "del", sensor_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_live_span_capture_through_the_api(veth: tuple[str, str, str], tmp_path: Path) -> None:
    ns, sensor_end, peer_end = veth
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = tmp_path / "live.db"
    server = Server(db, ["--sniff", sensor_end, "--policy", str(policy)], tmp_path / "serve.log")
    try:
        token = make_token(db, "viewer")
        status = server.get("/api/v1/status", token)
        assert status["sensor"] == {
            "running": True,
            "mode": "live",
            "interface": sensor_end,
            "interfaces": [sensor_end],
            "finished": False,
        }
        tx_before = tx_packets(sensor_end)

        out = run("ip", "netns", "exec", ns, "tcpreplay", "-i", peer_end, "--mbps", "10", str(CAPTURE))
        sent = int(out.split("Actual: ")[1].split(" packets")[0])
        assert sent == 58

        wait_for(lambda: server.get("/api/v1/status", token)["capture"]["packets"] >= sent)
        wait_for(lambda: server.get("/api/v1/assets", token)["total"] >= 1)
        wait_for(lambda: server.get("/api/v1/alerts", token)["total"] >= 1)

        status = server.get("/api/v1/status", token)
        capture = status["capture"]
        assert capture["packets"] >= sent  # seen >= sent (the kernel may add nothing: IPv6 is off)
        assert {"kernel_drops", "queue_drops"} <= capture.keys()
        assert status["drops"] == {"kernel": capture["kernel_drops"], "queue": capture["queue_drops"]}
        assert capture["kernel_drops"] + capture["queue_drops"] == 0
        assert status["capture_by_interface"] == {sensor_end: capture}  # one interface: all of it
        assert status["protocols"]["modbus"]["transactions"] == 24

        asset = server.get("/api/v1/assets/127.0.0.1", token)
        assert "modbus_server" in asset["roles"] and asset["zone"] == "loopback"
        edges = server.get("/api/v1/communications?protocol=modbus", token)
        assert edges["total"] == 1 and edges["items"][0]["operations"]
        alerts = server.get("/api/v1/alerts", token)
        assert alerts["items"][0]["rule"].startswith("policy:loopback")

        assert tx_packets(sensor_end) == tx_before, "the sensor transmitted on the capture interface"
    finally:
        code, took = server.stop()
    assert code == 0 and took < 10, server.log.read_text()[-3000:]
    assert tx_packets(sensor_end) == tx_before
