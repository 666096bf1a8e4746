"""Exports: nftables (checked by `nft -c` when installed), Suricata rules (parsed and compiled by the
project's rules engine), CSV and Markdown tables."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from policy.export import to_csv, to_markdown, to_nftables, to_suricata
from policy.load import parse_policy
from sensor.cli import main

POLICY = """\
version: 1
site: plant-a
zones:
  - id: control
    security_level: {target: 3}
    members: [10.10.1.0/24, "10.10.5.1-10.10.5.9", "fd00:1::/64", "aa:bb:cc:dd:ee:ff"]
  - id: scada
    members: [10.10.2.0/24, "fd00:2::/64"]
  - id: dmz
    members: [10.10.3.0/24, {tag: historian}]
  - id: cloud
    members: [192.0.2.10]
conduits:
  - id: scada-to-control
    from: scada
    to: control
    allow:
      - protocol: modbus
        functions: [read_holding_registers, write_single_register, 8]
        units: [1, 2]
        addresses: {holding_registers: "0-999"}
      - protocol: opcua
        services: [Read, Browse]
        min_security_mode: SignAndEncrypt
      - protocol: dnp3
        transport: tcp
        ports: [20000]
  - id: control-to-dmz
    from: control
    to: dmz
    allow:
      - protocol: mqtt
        publish: ["plant/+/telemetry/#"]
        subscribe: ["plant/cmd"]
      - protocol: ntp
        transport: udp
        ports: [123]
  - id: dmz-to-cloud
    from: dmz
    to: cloud
    allow:
      - protocol: mqtt
        publish: ["site/#"]
        require_tls: true
"""


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return parse_policy(POLICY)


def test_nftables_structure(policy) -> None:  # type: ignore[no-untyped-def]
    text = to_nftables(policy)
    assert "type filter hook forward priority filter; policy drop;" in text
    assert "elements = { 10.10.1.0/24, 10.10.5.1/32, 10.10.5.2/31, 10.10.5.4/30, 10.10.5.8/31 }" in text
    assert "meta l4proto tcp tcp dport { 502 } ct state new accept" in text
    assert "meta l4proto tcp tcp dport { 8883 } ct state new accept" in text  # TLS only for dmz-to-cloud
    assert "udp dport { 123 }" in text
    assert "# zone control: not exported (needs the sensor): MAC aa:bb:cc:dd:ee:ff" in text
    assert "ip6 saddr @z1_scada_v6 ip6 daddr @z0_control_v6" in text


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft (nftables) is not installed")
def test_nftables_passes_nft_check(policy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.nft"
    path.write_text(to_nftables(policy))
    result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert result.returncode == 0, result.stderr


def test_suricata_rules_parse_and_compile(policy) -> None:  # type: ignore[no-untyped-def]
    from rules.engine import compile_rule
    from rules.keywords import RuleUnsupported
    from rules.parse import parse_rules_text

    text = to_suricata(policy, sid_base=9_300_000)
    rules, errors = parse_rules_text(text, "policy.rules")
    assert errors == []
    assert [r.sid for r in rules] == list(range(9_300_000, 9_300_000 + len(rules)))
    compiled = 0
    for r in rules:
        if r.proto in ("tcp", "udp", "ip"):
            # header-only rules are for Suricata; the project engine does no packet inspection
            with pytest.raises(RuleUnsupported):
                compile_rule(r, {})
            continue
        compile_rule(r, {})  # raises on a keyword or value the engine does not accept
        compiled += 1
    assert compiled >= 10
    raw = [r.raw for r in rules]
    # PDU addresses 0-999 are rule addresses 1-1000, written strictly as 0<>1001
    assert any("modbus: unit 0<>3, access read holding, address 0<>1001;" in r for r in raw)
    assert any("modbus: unit 0<>3, function 8;" in r for r in raw)
    assert any("opcua.security_mode:SignAndEncrypt;" in r and "opcua.service:" in r for r in raw)
    assert any('pcre:"/^plant\\/[^/]*\\/telemetry(\\/.*)?$/"' in r for r in raw)
    assert any(r.startswith("alert ip 10.10.3.0/24 any -> [10.10.1.0/24,") and "no conduit" in r for r in raw)
    assert not any("mqtt.publish.topic" in r and "site" in r for r in raw)  # require_tls: no cleartext pass


def test_csv_and_markdown_tables(policy) -> None:  # type: ignore[no-untyped-def]
    rows = list(csv.reader(io.StringIO(to_csv(policy))))
    zones = [r for r in rows if r and r[0] == "zone"]
    conduits = [r for r in rows if r and r[0] == "conduit"]
    assert [z[1] for z in zones] == ["control", "scada", "dmz", "cloud"]
    assert zones[0][3] == "3"
    assert len(conduits) == 6
    assert conduits[0][1:6] == ["scada-to-control", "scada", "control", "", "modbus"]
    md = to_markdown(policy)
    assert md.count("\n| ") == 2 + 4 + 6
    assert (
        "| control-to-dmz | control | dmz |  | mqtt | publish plant/+/telemetry/#; subscribe plant/cmd |"
        in md
    )


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    for fmt in ("nftables", "suricata", "csv", "markdown"):
        assert main(["policy", "export", "--policy", str(path), "--format", fmt]) == 0
        assert capsys.readouterr().out
