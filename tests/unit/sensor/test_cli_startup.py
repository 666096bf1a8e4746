"""`zonewarden replay` starts without the heavy imports, and its fast parse answers as the whole parser.

A replay imports neither networkx (the graph builds it for algorithms and exports), cryptography (the
first certificate parsed imports it), YAML (``--config``), nor the other sub-commands' modules. For
replay and sniff, ``main`` parses with a parser of those two first and falls back to the whole parser on
anything it would refuse; what the user sees must be the same either way.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from zw_paths import PCAPS, REPO

from sensor.cli import _parse_args, build_parser

DEFERRED = (
    "networkx",
    "cryptography",
    "yaml",
    "api.pki.cli",
    "api.cli",
    "policy.cli",
    "rules.cli",
    "sensor.assets.cli",
    "sensor.assets.export",
    "sensor.detect.cli",
    "sensor.config",
)

REPLAY_THEN_LIST_MODULES = """
import os, sys
from sensor.cli import main
code = main(["replay", sys.argv[1], "--summary-json", os.devnull])
print(code, *sorted(name for name in sys.argv[2:] if name in sys.modules))
"""


def test_replay_imports_none_of_the_deferred_modules() -> None:
    pcap = str(PCAPS / "modbus-pymodbus-polling.pcap")
    cmd = [sys.executable, "-c", REPLAY_THEN_LIST_MODULES, pcap, *DEFERRED]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]  # exit code 0, and not one of DEFERRED imported


def test_registering_every_command_imports_no_heavy_library() -> None:
    """``zonewarden --help`` and every other command build the whole parser: registering stays cheap."""
    code = (
        "import sys; from sensor.cli import build_parser; build_parser(); "
        "print(*sorted(n for n in ('networkx', 'cryptography', 'yaml') if n in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "a.pcap"],
        ["-v", "replay", "a.pcap", "b.pcapng", "--eve", "e.json", "--summary-json", "-", "--deep", "-q"],
        ["--verbose", "replay", "a.pcap", "--learn-for", "2.5", "--baseline", "b.json", "--db", "z.db"],
        ["replay", "a.pcap", "--rules", "r1", "--rules", "r2", "--config", "c.yaml", "--pki-dir", "pki"],
        ["sniff", "-i", "eth1", "--bpf", "tcp port 502", "--duration", "3", "--follow-eve", "eve.json"],
    ],
)
def test_fast_parse_gives_the_whole_parsers_namespace(argv: list[str]) -> None:
    assert _parse_args(argv) == build_parser().parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["replay"],  # the capture is required
        ["replay", "a.pcap", "--bogus"],  # the top-level parser refuses it, with its usage line
        ["replay", "a.pcap", "--learn-for", "soon"],
        ["replay", "-v", "a.pcap"],  # -v belongs before the command
        ["sniff", "--duration", "3"],  # -i is required
        ["replay", "--help"],
        ["sniff", "-h"],
        ["-h", "replay"],
        ["--bogus", "replay", "a.pcap"],
    ],
)
def test_fast_parse_refuses_and_helps_as_the_whole_parser(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as fast:
        _parse_args(argv)
    fast_out = capsys.readouterr()
    with pytest.raises(SystemExit) as whole:
        build_parser().parse_args(argv)
    whole_out = capsys.readouterr()
    assert fast.value.code == whole.value.code
    assert (fast_out.out, fast_out.err) == (whole_out.out, whole_out.err)
    assert fast_out.out or fast_out.err


def test_other_commands_go_to_the_whole_parser() -> None:
    args = _parse_args(["graph", "export", "--format", "dot"])
    assert isinstance(args, argparse.Namespace) and args.format == "dot"
