"""Remote mirroring for real: pymodbus traffic carried in VXLAN by the Linux kernel, read through it.

Two network namespaces joined by a veth pair (the underlay, 192.0.2.0/24) each get a kernel VXLAN
device (VNI 42, UDP 4789) with an overlay address (10.42.0.0/24). A pymodbus server listens on the
overlay in one namespace and a pymodbus client polls it from the other, while tcpdump records the
underlay: every frame of the capture is a VXLAN datagram from the kernel's own encapsulation. The
sensor must read the Modbus conversation inside, with the overlay hosts as its assets, and agree with
tshark, which opens VXLAN too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from zw_paths import PCAPS, REPO
from zw_tshark import modbus_function_codes
from zw_veth import mac_address, tx_packets
from zw_wait import wait_for

from pcaps.generate.record import recording
from sensor.runtime import SensorConfig, replay

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tcpdump") is None,
    reason="needs root, ip (iproute2) and tcpdump for network namespaces and the recording",
)

UNDERLAY = {"a": "192.0.2.1", "b": "192.0.2.2"}
OVERLAY = {"a": "10.42.0.1", "b": "10.42.0.2"}  # the client's and the PLC's addresses
POLLS = 6  # rounds of FC3 + FC1 + FC4

SERVER = """
import asyncio
from pymodbus.server import ModbusTcpServer
from pcaps.generate.modbus_gen import _context

async def main():
    await ModbusTcpServer(_context(), address=("{host}", 502)).serve_forever()

asyncio.run(main())
"""

CLIENT = """
import asyncio
from pymodbus.client import AsyncModbusTcpClient

async def main():
    client = AsyncModbusTcpClient("{host}", port=502, timeout=2, retries=0)
    for _ in range(100):
        if await client.connect():
            break
        await asyncio.sleep(0.1)
    else:
        raise SystemExit("the pymodbus server did not come up")
    for _ in range({polls}):
        await client.read_holding_registers(0, count=10, device_id=1)
        await client.read_coils(0, count=16, device_id=1)
        await client.read_input_registers(4, count=8, device_id=2)
    client.close()
    await asyncio.sleep(0.3)

asyncio.run(main())
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def vxlan_namespaces() -> Iterator[dict[str, str]]:
    """Namespaces a and b with the underlay veth and the kernel VXLAN overlay; yields their names."""
    suffix = str(os.getpid() % 100000)
    names = {side: f"zwvx{side}{suffix}" for side in "ab"}
    veth = {side: f"zwvx{side}{suffix}"[:15] for side in "ab"}
    for ns in names.values():
        ip("netns", "add", ns)
    try:
        for ns in names.values():  # no IPv6: the kernel would add its own neighbour discovery traffic
            subprocess.run(
                ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1"],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
        ip("link", "add", veth["a"], "type", "veth", "peer", "name", veth["b"])
        for side, other in (("a", "b"), ("b", "a")):
            ns = names[side]
            ip("link", "set", veth[side], "netns", ns)
            ip("-n", ns, "addr", "add", f"{UNDERLAY[side]}/24", "dev", veth[side])
            ip("-n", ns, "link", "set", veth[side], "up")
            ip("-n", ns, "link", "set", "lo", "up")
            created = subprocess.run(
                ["ip", "-n", ns, "link", "add", "vx42", "type", "vxlan", "id", "42", "dstport", "4789",
                 "local", UNDERLAY[side], "remote", UNDERLAY[other]],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if created.returncode != 0:
                pytest.skip(f"the kernel cannot make a VXLAN device here: {created.stderr.strip()}")
            ip("-n", ns, "addr", "add", f"{OVERLAY[side]}/24", "dev", "vx42")
            ip("-n", ns, "link", "set", "vx42", "up")
        yield {"a": names["a"], "b": names["b"], "veth_a": veth["a"]}
    finally:
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def in_namespace(ns: str, script: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", script]


def test_modbus_in_kernel_vxlan_is_read_through_the_tunnel(
    vxlan_namespaces: dict[str, str], tmp_path: Path
) -> None:
    capture = tmp_path / "vxlan.pcap"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        in_namespace(vxlan_namespaces["b"], SERVER.format(host=OVERLAY["b"])),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # tcpdump records the underlay veth inside namespace a: the datagrams the kernel encapsulated
        underlay, ns_a = vxlan_namespaces["veth_a"], vxlan_namespaces["a"]
        with recording(capture, "udp port 4789", interface=underlay, namespace=ns_a):
            client = subprocess.run(
                in_namespace(vxlan_namespaces["a"], CLIENT.format(host=OVERLAY["b"], polls=POLLS)),
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert client.returncode == 0, client.stderr[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=10)

    summary, reports = replay([capture], SensorConfig())
    assert reports[0].error is None
    assert summary["decoder"]["decoder.decapsulated_vxlan"] == summary["packets"] > 0
    modbus = summary["modbus"]
    assert modbus["requests_by_function"] == {"1": POLLS, "3": POLLS, "4": POLLS}
    assert modbus["responses_by_function"] == modbus["requests_by_function"]
    assert modbus["transactions"] == 3 * POLLS
    assert modbus["servers"] == [f"{OVERLAY['b']}:502"]
    assert modbus["clients"] == [OVERLAY["a"]]
    assert summary["assets"] == 2  # the overlay's two hosts; the underlay's ends are not assets

    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (make test installs it): the oracle half was not checked")
    assert modbus_function_codes(capture) == Counter({"1": 2 * POLLS, "3": 2 * POLLS, "4": 2 * POLLS})


# --- the sensor as the tunnel's destination ----------------------------------------------------

SENSOR_ADDRESS, SWITCH_ADDRESS = "192.0.2.2", "192.0.2.1"
DROP_VXLAN = """
table inet zonewarden_test {
  chain input {
    type filter hook input priority 0;
    udp dport 4789 drop
  }
}
"""


@pytest.fixture
def sensor_namespace() -> Iterator[tuple[str, str, str]]:
    """A namespace holding the sensor's capture end (192.0.2.2) of a veth pair whose other end, left in the
    test's namespace, plays the remote switch; no IPv6, and the switch's address known without ARP, so
    that the only frames the sensor's host can send are its answers to the tunnelled datagrams."""
    suffix = str(os.getpid() % 100000)
    ns, sensor_end, switch_end = f"zwvd{suffix}", f"zwvds{suffix}"[:15], f"zwvdw{suffix}"[:15]
    ip("netns", "add", ns)
    try:
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        ip("link", "add", switch_end, "type", "veth", "peer", "name", sensor_end)
        Path(f"/proc/sys/net/ipv6/conf/{switch_end}/disable_ipv6").write_text("1")
        ip("link", "set", sensor_end, "netns", ns)
        ip("-n", ns, "addr", "add", f"{SENSOR_ADDRESS}/24", "dev", sensor_end)
        ip("-n", ns, "link", "set", sensor_end, "up")
        ip("link", "set", switch_end, "up")
        ip("-n", ns, "neigh", "add", SWITCH_ADDRESS, "lladdr", mac_address(switch_end), "dev", sensor_end)
        yield ns, sensor_end, switch_end
    finally:
        subprocess.run(["ip", "link", "del", switch_end], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.mark.parametrize("firewall", [True, False], ids=["dropped_on_input", "no_firewall"])
def test_sensor_as_the_vxlan_destination_reads_what_its_firewall_drops(
    sensor_namespace: tuple[str, str, str], tmp_path: Path, firewall: bool
) -> None:
    """README: let the host's firewall drop the tunnel on input, or the host answers each datagram with
    an ICMP unreachable; the sensor still sees them (packet sockets read before the firewall)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.utils import rdpcap
    from zw_tap import raw_senders

    ns, sensor_end, switch_end = sensor_namespace
    if firewall:
        if shutil.which("nft") is None:
            pytest.skip("nft (nftables) is not installed (make test installs it)")
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=DROP_VXLAN, text=True, check=True)
    original = PCAPS / "modbus-pymodbus-polling.pcap"
    outer = Ether(src=mac_address(switch_end), dst=mac_address(sensor_end, ns)) / IP(
        src=SWITCH_ADDRESS, dst=SENSOR_ADDRESS
    )
    frames = [
        bytes(outer / UDP(sport=49152, dport=4789) / VXLAN(vni=5) / frame) for frame in rdpcap(str(original))
    ]

    log, summary = tmp_path / "sniff.log", tmp_path / "summary.json"
    command = ["ip", "netns", "exec", ns, sys.executable, "-m", "sensor.cli", "-v", "sniff", "-i", sensor_end,
               "--duration", "4", "--summary-json", str(summary)]  # fmt: skip
    with log.open("wb") as out:
        sniff = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=out)
    try:
        wait_for(
            lambda: sniff.poll() is not None or f"capturing on {sensor_end} ".encode() in log.read_bytes()
        )
        tx_before = tx_packets(sensor_end, ns)
        with raw_senders([switch_end]) as (sender,):
            for frame in frames:
                sender.send(frame)
        assert sniff.wait(30) == 0, log.read_text()[-2000:]
        answers = tx_packets(sensor_end, ns) - tx_before
    finally:
        if sniff.poll() is None:
            sniff.kill()
            sniff.wait()
    doc = json.loads(summary.read_text())
    assert doc["decoder"]["decoder.decapsulated_vxlan"] == len(frames) == 58
    assert doc["modbus"]["transactions_by_status"] == {"ok": 24}
    if firewall:
        assert answers == 0  # dropped before the stack: no ICMP back to the switch
    else:
        assert answers > 0  # ICMP port unreachable (rate-limited) for the datagrams to 4789
