"""policy/cli.py ``merge_violations`` (``policy check --json`` and GET /api/v1/policy/compliance): a rule
between two hosts fires once per aggregation window, and each alert can span several communications; the
merged row keeps every port, protocol and operation they saw, and is the same whatever order the alerts
come in (the CLI hands them in publication order, the API newest first)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from zw_paths import REPO

from policy.cli import MAX_MERGED_EDGES, MAX_MERGED_OPERATIONS, merge_violations
from sensor.cli import main

RULE = "policy:scada->control:no_conduit"


def _row(
    ts: float, port: int, severity: int, count: int, evidence: Any, src: str = "10.0.0.5"
) -> dict[str, Any]:
    return {
        "rule": RULE,
        "src_ip": src,
        "dest_ip": "10.0.1.5",
        "dest_port": port,
        "count": count,
        "src_zone": "scada",
        "dest_zone": "control",
        "conduit": "",
        "ts": ts,
        "last_ts": ts + 50,
        "severity": severity,
        "signature": f"Policy violation no_conduit at {ts}",
        "evidence": evidence,
    }


READS = {  # one alert for Modbus reads and an MQTT publish (policy/observer.py evidence)
    "protocol": "modbus",
    "transport": "tcp",
    "summary": "read_holding_registers 0..1",
    "distinct_operations": ["read_holding_registers 0..1", "publish plant/cmd"],
    "protocols": ["modbus", "mqtt"],
    "edges": [{"protocol": "modbus", "port": 502}, {"protocol": "mqtt", "port": 1883}],
}
UNKNOWN = {"protocol": "unknown", "transport": "tcp", "summary": "unidentified flow on tcp/20000"}
WRITE = {"protocol": "modbus", "transport": "tcp", "summary": "write_single_register 7 = 1"}


def test_merged_violation_keeps_every_port_protocol_and_operation() -> None:
    rows = [
        _row(100.0, 502, 2, 10, READS),
        _row(1000.0, 20000, 2, 3, UNKNOWN),  # a later window: an unknown service
        _row(2000.0, 502, 1, 1, WRITE),  # a later window still: a write (high severity)
        _row(150.0, 502, 2, 4, WRITE, src="10.0.0.6"),  # another initiator: its own row
    ]
    merged = merge_violations(rows)
    assert [(v["src_ip"], v["count"], v["alerts"]) for v in merged] == [
        ("10.0.0.5", 14, 3),
        ("10.0.0.6", 4, 1),
    ]
    v = merged[0]
    # the earliest alert's own fields, as before
    assert (v["dest_port"], v["first_ts"], v["last_ts"]) == (502, 100.0, 2050.0)
    assert v["evidence"] == READS and v["signature"] == "Policy violation no_conduit at 100.0"
    # what every alert saw
    assert v["severity"] == 1  # the write's
    assert v["edges"] == [
        {"protocol": "modbus", "port": 502},
        {"protocol": "mqtt", "port": 1883},
        {"protocol": "tcp", "port": 20000},  # as the inventory names an unidentified flow's edge
    ]
    assert v["protocols"] == ["modbus", "mqtt", "tcp"]
    assert v["dest_ports"] == [502, 1883, 20000]
    assert v["operations"] == [
        "read_holding_registers 0..1",
        "publish plant/cmd",
        "unidentified flow on tcp/20000",
        "write_single_register 7 = 1",
    ]
    assert v["edges_truncated"] is False and v["operations_truncated"] is False
    assert merged[1]["edges"] == [{"protocol": "modbus", "port": 502}] and merged[1]["dest_ports"] == [502]

    # the API lists the store's alerts newest first: the same report
    assert merge_violations(list(reversed(rows))) == merged


def test_merged_edges_and_operations_are_bounded() -> None:
    scan = [
        _row(float(n), 1000 + n, 2, 1, {"protocol": "unknown", "transport": "tcp", "summary": f"scan {n}"})
        for n in range(MAX_MERGED_EDGES + 10)
    ]
    [v] = merge_violations(scan)
    assert v["alerts"] == v["count"] == len(scan)
    assert v["dest_ports"] == list(range(1000, 1000 + MAX_MERGED_EDGES)) and v["edges_truncated"] is True
    assert v["edges"][0] == {"protocol": "tcp", "port": 1000} and v["protocols"] == ["tcp"]
    assert v["operations"] == [f"scan {n}" for n in range(MAX_MERGED_OPERATIONS)]
    assert v["operations_truncated"] is True


def test_evidence_written_by_something_else_lists_only_what_it_can() -> None:
    odd: list[Any] = [
        None,
        "text",
        {"edges": "tcp/1", "distinct_operations": 5, "edges_truncated": "yes"},
        {"edges": [None, {"protocol": 6, "port": "x"}, {"protocol": "udp", "port": True}, {"port": 7}]},
    ]
    [v] = merge_violations([_row(float(n), 1, 3, 1, e) for n, e in enumerate(odd)])
    assert v["alerts"] == 4 and v["evidence"] is None
    assert v["edges"] == [{"protocol": "unknown", "port": 1}] and v["dest_ports"] == [1]
    assert v["operations"] == [] and v["edges_truncated"] is False


TWO_ZONES = """\
version: 1
default: deny
zones:
  - id: control
    members: [10.0.1.0/24]
  - id: scada
    members: [10.0.0.0/24]
conduits: []
"""


def test_policy_check_reports_every_port_a_scan_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(REPO / "tests" / "replay"))
    from builders import Conversation, _write

    scan = []
    for n, port in enumerate((21, 23, 80)):  # SYN, RST: no dissector claims them
        probe = Conversation("10.0.0.6", "10.0.1.5", 41000 + n, port)
        probe.packets += [probe._pkt(True, "S"), probe._pkt(False, "RA")]
        scan.append(probe)
    pcap, policy = tmp_path / "scan.pcap", tmp_path / "policy.yaml"
    _write(pcap, *scan)
    policy.write_text(TWO_ZONES)
    assert main(["policy", "check", "--policy", str(policy), str(pcap), "--json"]) == 1
    [v] = json.loads(capsys.readouterr().out)["violations"]
    assert (v["dest_port"], v["count"], v["alerts"], v["dest_ports"]) == (21, 3, 1, [21, 23, 80])
    assert v["protocols"] == ["tcp"]
    assert main(["policy", "check", "--policy", str(policy), str(pcap)]) == 1
    assert (
        "10.0.0.6 -> 10.0.1.5:21" in (out := capsys.readouterr().out) and "on tcp/21, tcp/23, tcp/80" in out
    )
