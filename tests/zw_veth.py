"""A fresh veth pair for live-capture tests (root): the one place that makes and removes them, and reads
an interface's counters and address (in another network namespace too)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def veth_pair(prefix: str, tools: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """(capture end, sending end), both up, IPv6 off so the kernel itself sends nothing; skips the test
    with the reason when not root or a tool (``ip`` and ``tools``) is missing."""
    if os.geteuid() != 0:
        pytest.skip("live capture needs root (AF_PACKET socket, veth pair)")
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    suffix = f"{os.getpid() % 100000}{threading.get_ident() % 97}"
    capture_end, send_end = f"{prefix}A{suffix}"[:15], f"{prefix}B{suffix}"[:15]
    created = subprocess.run(
        ["ip", "link", "add", capture_end, "type", "veth", "peer", "name", send_end],
        capture_output=True,
        text=True,
    )
    if created.returncode != 0:
        pytest.skip(f"cannot create a veth pair: {created.stderr.strip()}")
    try:
        for name in (capture_end, send_end):
            disable = Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6")
            if disable.exists():
                disable.write_text("1")
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield capture_end, send_end
    finally:
        subprocess.run(["ip", "link", "del", capture_end], capture_output=True)


def _sysfs(interface: str, name: str, namespace: str | None) -> str:
    """/sys/class/net/INTERFACE/NAME, read inside ``namespace`` (``ip netns exec``) when given."""
    path = f"/sys/class/net/{interface}/{name}"
    if namespace is None:
        return Path(path).read_text().strip()
    read = ["ip", "netns", "exec", namespace, "cat", path]
    return subprocess.run(read, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def tx_packets(interface: str, namespace: str | None = None) -> int:
    """Frames ``interface`` has sent: a capture interface must never send one."""
    return int(_sysfs(interface, "statistics/tx_packets", namespace))


def mac_address(interface: str, namespace: str | None = None) -> str:
    return _sysfs(interface, "address", namespace)
