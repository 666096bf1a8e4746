"""Record loopback traffic of a real protocol stack into a pcap with tcpdump.

Each generator starts a real server and client bound to 127.0.0.1 and wraps the conversation in
:func:`recording`, so the capture holds exactly what the stacks put on the wire.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


class RecordingError(RuntimeError):
    """tcpdump is missing or could not start (it needs root or CAP_NET_RAW on the loopback)."""


@contextlib.contextmanager
def recording(
    out: Path, bpf: str, interface: str = "lo", snaplen: int = 262144, namespace: str | None = None
) -> Iterator[Path]:
    """Run tcpdump on ``interface`` with ``bpf`` writing to ``out`` for the duration of the block;
    inside the network namespace ``namespace`` (``ip netns exec``) when given."""
    tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
    if not os.path.exists(tcpdump):
        raise RecordingError("tcpdump not found (apt-get install tcpdump)")
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [tcpdump, "-i", interface, "-s", str(snaplen), "-U", "--immediate-mode", "-n", "-w", str(out), bpf]
    if namespace is not None:
        cmd = ["ip", "netns", "exec", namespace, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # tcpdump prints "listening on ..." to stderr once the capture is armed.
        assert proc.stderr is not None
        deadline = time.monotonic() + 10
        line = b""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if b"listening on" in line or not line:
                break
        if proc.poll() is not None:
            raise RecordingError(f"tcpdump failed: {line.decode(errors='replace').strip()}")
        yield out
        time.sleep(0.3)  # let the last packets reach the file
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def generator_main(
    description: str,
    generate: Callable[[Path, list[str]], Sequence[Path]],
    argv: list[str] | None = None,
) -> int:
    """The command line every generator shares: ``--out DIR`` and optionally the capture names to make."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("names", nargs="*", help="only these capture names (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in generate(args.out, args.names):
        print(f"{path}: {path.stat().st_size} bytes")
    return 0
