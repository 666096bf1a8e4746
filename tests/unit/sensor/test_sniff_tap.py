"""``zonewarden sniff -i A -i B`` and ``serve --sniff A --sniff B``: several interfaces captured together,
end to end (sensor/cli.py, api/cli.py, sensor/live.py LiveRunner, sensor/deep.py LiveDeepScan).

Behind a passive TAP each monitor port carries one direction of every conversation; the real CLI on both
ports pairs every Modbus request with its response as a replay of the same capture does, while on one
port alone nothing pairs. Root tests use two veth pairs (tests/zw_tap.py); skipped without root."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zw_paths import PCAPS, REPO
from zw_tap import CLIENT_TO_SERVER, SERVER_TO_CLIENT, raw_senders, send_as_tap, tap_sides
from zw_veth import tx_packets, veth_pair
from zw_wait import wait_for

from api.routes.health import build_status
from api.schemas.system import SensorInfo
from sensor.cli import _parse_args, build_parser
from sensor.deep import LiveDeepScan, dumpcap_command, tshark_available
from sensor.errors import CaptureError
from sensor.live import LiveRunner
from sensor.runtime import Sensor, SensorConfig

MODBUS = PCAPS / "modbus-pymodbus-polling.pcap"
MISSING = "zw-no-such-if1"
# An Ethernet frame of the local experimental EtherType 0x88B5 (IEEE 802): no IP, no flow, no protocol
PROBE = bytes.fromhex("02000000000202000000000188b5") + b"zonewarden probe".ljust(46, b"\x00")


def _zonewarden(*args: str) -> list[str]:
    return [sys.executable, "-m", "sensor.cli", *args]


@pytest.fixture
def tap() -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    """Two veth pairs: (capture end, sending end) of the client->server port, then of the other."""
    with veth_pair("zwsa") as client_to_server, veth_pair("zwsb") as server_to_client:
        yield client_to_server, server_to_client


# --------------------------------------------------------------------------------------------------
# No root needed: parsing, wiring, documents
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "interfaces"),
    [
        (["sniff", "-i", "eth1"], ["eth1"]),
        (["sniff", "--interface", "eth1", "--duration", "3"], ["eth1"]),
        (["sniff", "-i", "eth1", "-i", "eth2", "--bpf", "tcp port 502"], ["eth1", "eth2"]),
        (["sniff", "-i", "eth1", "--interface", "eth2", "-i", "eth3"], ["eth1", "eth2", "eth3"]),
    ],
)
def test_sniff_takes_one_interface_or_several(argv: list[str], interfaces: list[str]) -> None:
    args = _parse_args(argv)
    assert args.interface == interfaces
    assert args == build_parser().parse_args(argv)  # the fast parse answers as the whole parser


@pytest.mark.parametrize(
    ("argv", "interfaces"),
    [
        ([], []),
        (["--sniff", "eth1"], ["eth1"]),
        (["--sniff", "eth1", "--sniff", "eth2", "--bpf", "tcp"], ["eth1", "eth2"]),
    ],
)
def test_serve_sniff_is_repeatable(
    argv: list[str], interfaces: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import api.serve
    from api.cli import cmd_serve

    given: list[api.serve.ServeOptions] = []

    def serve(options: api.serve.ServeOptions) -> int:
        given.append(options)
        return 0

    monkeypatch.setattr(api.serve, "serve", serve)
    args = build_parser().parse_args(["serve", "--db", str(tmp_path / "zw.db"), *argv])
    assert cmd_serve(args) == 0
    assert given[0].sniff == interfaces


@pytest.mark.parametrize(
    ("given", "interface", "interfaces", "mode"),
    [
        ("eth0", "eth0", ["eth0"], "live"),
        (["eth1", "eth2"], "eth1,eth2", ["eth1", "eth2"], "live"),
        (["eth1", "eth2", "eth1"], "eth1,eth2", ["eth1", "eth2"], "live"),
        (None, None, [], "replay"),
    ],
)
def test_runner_status_keeps_interface_a_string_and_adds_the_list(
    given: str | list[str] | None, interface: str | None, interfaces: list[str], mode: str
) -> None:
    runner = LiveRunner(Sensor(SensorConfig()), interface=given, paths=[] if given else [MODBUS])
    assert (runner.interface, runner.interfaces, runner.mode) == (interface, interfaces, mode)
    doc = runner.status()
    assert doc["sensor"]["interface"] == interface and doc["sensor"]["interfaces"] == interfaces
    assert doc["summary"]["live"]["interface"] == interface
    assert doc["summary"]["live"].get("interfaces", []) == interfaces
    # GET /api/v1/status validates the same document (its schema: interface is a string or null)
    info = SensorInfo(**doc["sensor"])
    assert info.interface == interface and info.mode == mode
    assert build_status(doc["summary"], info).sensor == info


def test_dumpcap_gets_every_interface_each_with_the_filter() -> None:
    # one interface: the command as it always was
    assert dumpcap_command("dumpcap", ["eth0"], None) == ["dumpcap", "-i", "eth0", "-q", "-w", "-"]
    assert dumpcap_command("dumpcap", ["eth0"], "tcp") == [
        "dumpcap",
        "-i",
        "eth0",
        "-q",
        "-w",
        "-",
        "-f",
        "tcp",
    ]
    # several: a -f after an -i is that interface's filter (dumpcap(1)), so each -i is followed by one
    assert dumpcap_command("/usr/bin/dumpcap", ["eth1", "eth2"], "tcp port 502") == [
        *("/usr/bin/dumpcap", "-i", "eth1", "-f", "tcp port 502"),
        *("-i", "eth2", "-q", "-w", "-", "-f", "tcp port 502"),
    ]
    assert dumpcap_command("dumpcap", ["eth1", "eth2"], None) == [
        *("dumpcap", "-i", "eth1", "-i", "eth2", "-q", "-w", "-"),
    ]
    scan = LiveDeepScan(["eth1", "eth2", "eth1"])
    assert (scan.interfaces, scan.interface) == (("eth1", "eth2"), "eth1,eth2")
    assert LiveDeepScan("eth0").interfaces == ("eth0",)


# --------------------------------------------------------------------------------------------------
# Root: two veth pairs as a TAP's two monitor ports
# --------------------------------------------------------------------------------------------------


def _replayed() -> dict[str, Any]:
    done = subprocess.run(
        _zonewarden("replay", str(MODBUS), "--summary-json", "-"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


@pytest.mark.needs_root
def test_sniff_cli_on_both_tap_ports_pairs_every_request_with_its_response(
    tap: tuple[tuple[str, str], tuple[str, str]], tmp_path: Path
) -> None:
    (capture_a, send_a), (capture_b, send_b) = tap
    sides = tap_sides(MODBUS, 502)
    sent = {CLIENT_TO_SERVER: 0, SERVER_TO_CLIENT: 0}
    sent_bytes = dict(sent)
    for side, data in sides:
        sent[side] += 1
        sent_bytes[side] += len(data)
    assert sent == {CLIENT_TO_SERVER: 30, SERVER_TO_CLIENT: 28}
    runs = {
        "both": ["-i", capture_a, "-i", capture_b],
        "requests": ["-i", capture_a],  # one port alone: client -> server
        "responses": ["--interface", capture_b],  # the other alone: server -> client
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in runs}
    try:
        for name, interfaces in runs.items():
            with logs[name].open("wb") as log:
                # --duration counts from the moment capture started (logged): the frames go in ~1 s
                command = ["-v", "sniff", *interfaces, "--duration", "5"]
                command += ["--summary-json", str(tmp_path / f"{name}.json")]
                procs[name] = subprocess.Popen(_zonewarden(*command), cwd=REPO, stdout=log, stderr=log)

        def capturing(name: str, interface: str) -> bool:
            return f"capturing on {interface} ".encode() in logs[name].read_bytes()

        wait_for(
            lambda: (
                all(p.poll() is not None for p in procs.values())
                or (
                    capturing("both", capture_a)
                    and capturing("both", capture_b)
                    and capturing("requests", capture_a)
                    and capturing("responses", capture_b)
                )
            )
        )
        tx_before = (tx_packets(capture_a), tx_packets(capture_b))
        started = time.monotonic()
        # a pause after each frame: it is queued before the next leaves, so arrival order is capture order
        send_as_tap(sides, (send_a, send_b), pause=0.01)
        assert time.monotonic() - started < 4, "sending took longer than the sniffers' duration allows"
        codes = {name: proc.wait(30) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert codes == dict.fromkeys(runs, 0), {name: log.read_text()[-2000:] for name, log in logs.items()}
    assert (tx_packets(capture_a), tx_packets(capture_b)) == tx_before, "the sensor transmitted"
    doc = json.loads((tmp_path / "both.json").read_text())
    replayed = _replayed()

    # both ports: what a replay of the capture gives, every request paired with its response
    assert doc["modbus"]["transactions"] == replayed["modbus"]["transactions"] == 24
    assert doc["modbus"]["requests_by_function"] == replayed["modbus"]["requests_by_function"]
    assert (
        doc["modbus"]["transactions_by_status"] == replayed["modbus"]["transactions_by_status"] == {"ok": 24}
    )
    assert doc["modbus"] == replayed["modbus"]
    assert (doc["packets"], doc["flows"]) == (replayed["packets"], replayed["flows"]) == (58, 2)
    assert doc["live"]["interface"] == f"{capture_a},{capture_b}"  # the contract: a string
    assert doc["live"]["interfaces"] == [capture_a, capture_b]
    by_interface = doc["capture_by_interface"]
    assert list(by_interface) == [capture_a, capture_b]
    assert by_interface[capture_a]["packets"] == sent[CLIENT_TO_SERVER]
    assert by_interface[capture_b]["packets"] == sent[SERVER_TO_CLIENT]
    assert by_interface[capture_a]["bytes"] == sent_bytes[CLIENT_TO_SERVER]
    assert by_interface[capture_b]["bytes"] == sent_bytes[SERVER_TO_CLIENT]
    assert doc["capture"] == {key: sum(c[key] for c in by_interface.values()) for key in doc["capture"]}
    assert doc["capture"]["packets"] == 58 and doc["capture"]["queue_drops"] == 0

    # one port alone: half of each conversation, and not one transaction completes
    requests = json.loads((tmp_path / "requests.json").read_text())
    responses = json.loads((tmp_path / "responses.json").read_text())
    assert requests["capture"]["packets"] == 30 and responses["capture"]["packets"] == 28
    assert requests["live"]["interface"] == capture_a and responses["live"]["interfaces"] == [capture_b]
    assert list(requests["capture_by_interface"]) == [capture_a]
    assert requests["modbus"]["requests_by_function"] == replayed["modbus"]["requests_by_function"]
    assert requests["modbus"]["transactions_by_status"] == {"unanswered": 24}
    assert responses["modbus"]["requests_by_function"] == {}
    assert responses["modbus"]["transactions_by_status"] == {"unsolicited": 24}


@pytest.mark.needs_root
@pytest.mark.parametrize("where", ["missing_first", "missing_between"])
def test_sniff_cli_with_a_missing_interface_among_others_exits_2_with_one_line(
    tap: tuple[tuple[str, str], tuple[str, str]], where: str
) -> None:
    (capture_a, _), (capture_b, _) = tap
    # between: capture_a's socket is open when MISSING fails, and capture_b is never opened
    names = [MISSING, capture_a] if where == "missing_first" else [capture_a, MISSING, capture_b]
    done = subprocess.run(
        _zonewarden("sniff", *(word for name in names for word in ("-i", name)), "--duration", "60"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,  # ends at once: nothing keeps running for the 60 s asked
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()  # no traceback, no warning of scapy's about the interface opened first
    assert len(lines) == 1 and lines[0].startswith(f"zonewarden: error: {MISSING}: cannot capture: "), lines
    assert done.stdout == ""


@pytest.mark.needs_root
def test_runner_with_a_missing_interface_starts_no_thread(
    tap: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    (capture_a, _), (capture_b, _) = tap
    before = {t.ident for t in threading.enumerate()}
    runner = LiveRunner(Sensor(SensorConfig()), interface=[capture_a, capture_b, MISSING])
    with pytest.raises(CaptureError, match=f"^{MISSING}: cannot capture: "):
        runner.start()
    assert {t.ident for t in threading.enumerate()} == before
    assert runner.stop()


def _probe_until_read(scan: LiveDeepScan, sender: socket.socket) -> None:
    """Send PROBE out of ``sender`` (again every half second) until tshark has read one more frame."""
    before = int(scan.counters()["packets"] or 0)
    wait_for(lambda: sender.send(PROBE) and int(scan.counters()["packets"] or 0) > before, 20, 0.5)


@pytest.mark.needs_root
@pytest.mark.skipif(not tshark_available(), reason="tshark is not installed (apt install tshark)")
def test_live_deep_reads_both_tap_ports_each_with_the_filter(
    tap: tuple[tuple[str, str], tuple[str, str]], tmp_path: Path
) -> None:
    from test_deep_identify import bacnet_capture, dnp3_capture

    (capture_a, send_a), (capture_b, send_b) = tap
    dnp3, bacnet = tmp_path / "dnp3.pcap", tmp_path / "bacnet.pcap"
    dnp3_capture(dnp3)
    bacnet_capture(bacnet)
    dnp3_sides = tap_sides(dnp3, 20000)
    assert {side for side, _ in dnp3_sides} == {CLIENT_TO_SERVER, SERVER_TO_CLIENT}
    # BACnet goes out of the first port, where the filter must drop it (a filter given once, after the
    # last -i, would apply to the last interface only)
    frames = [(CLIENT_TO_SERVER, data) for _, data in tap_sides(bacnet, 47808)] + dnp3_sides
    scan = LiveDeepScan([capture_a, capture_b], bpf="not udp port 47808")
    assert scan.start(), scan.error
    try:
        assert scan.ready.wait(30), "dumpcap did not start capturing"
        # dumpcap says "Capturing on 'a' and 'b'" before it reads from every one of several interfaces:
        # a probe out of each port, again until tshark has read one, shows that both are read now
        with raw_senders((send_a, send_b)) as senders:
            for sender in senders:
                _probe_until_read(scan, sender)
        send_as_tap(frames, (send_a, send_b), pause=0.002)
        wait_for(lambda: [f.packets for f in scan.changed_flows(everything=True)] == [len(dnp3_sides)], 20)
        time.sleep(0.3)  # a BACnet frame let through by mistake would be read by now
    finally:
        scan.stop()
    assert scan.error is None
    # every frame of the DNP3 connection: both ports read; BACnet dropped by the first port's filter
    assert [(f.protocol, f.packets) for f in scan.changed_flows(everything=True)] == [
        ("dnp3", len(dnp3_sides))
    ]
    assert scan.summary() == {"dnp3": 1}
