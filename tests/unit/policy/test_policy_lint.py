"""Lints of valid policies: weak security into high-SL zones, overlaps, shadowed and unreachable rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.lint import lint
from policy.load import line_map, parse_policy
from sensor.cli import main

POLICY = """\
version: 1
zones:
  - id: control
    security_level: {target: 2}
    members: [10.10.1.0/24]
  - id: scada
    members: [10.10.2.0/24]
  - id: cell
    members: [10.10.1.128/25]
  - id: ghost
  - id: twin
    members: [10.10.2.0/24]
conduits:
  - id: scada-to-control
    from: scada
    to: control
    security_level: {target: 1}
    allow:
      - protocol: opcua
        services: [Read]
      - protocol: mqtt
        publish: ["plant/#"]
        require_tls: false
      - protocol: modbus
        functions: [read]
      - protocol: modbus
        functions: [read_holding_registers]
        units: [1]
      - protocol: opcua
        services: [Read]
        min_security_mode: Sign
  - id: to-ghost
    from: scada
    to: ghost
    allow: []
  - id: again
    from: scada
    to: control
    allow:
      - {protocol: dnp3, ports: [20000]}
"""


def findings() -> list[tuple[int, str]]:
    return [(f.line, f.code) for f in lint(parse_policy(POLICY), line_map(POLICY))]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (19, "opcua_without_sign"),
        (21, "mqtt_without_tls"),
        (17, "conduit_sl_below_zone"),
        (9, "zone_overlap"),
        (12, "zone_overlap"),
        (10, "zone_empty"),
        (11, "zone_shadowed"),
        (26, "rule_shadowed"),  # read_holding_registers of unit 1 adds nothing to 'read'
        (29, "rule_shadowed"),  # Read under Sign adds nothing to Read under any mode
        (32, "conduit_empty"),
        (32, "zone_empty"),
        (36, "conduit_duplicate_pair"),
    ],
)
def test_lint_finds(line: int, code: str) -> None:
    assert (line, code) in findings()


def test_stronger_entries_are_not_shadowed() -> None:
    got = findings()
    assert (24, "rule_shadowed") not in got  # modbus 'read' is the broader entry
    assert (19, "rule_shadowed") not in got  # the weaker-mode OPC UA entry is the broader one
    assert (8, "zone_shadowed") not in got  # 'cell' is more specific: it wins its addresses


def test_clean_policy_has_no_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = """\
version: 1
zones:
  - id: control
    security_level: {target: 3}
    members: [10.10.1.0/24]
  - id: scada
    members: [10.10.2.0/24]
conduits:
  - id: scada-to-control
    from: scada
    to: control
    security_level: {target: 3}
    allow:
      - protocol: opcua
        min_security_mode: SignAndEncrypt
      - protocol: mqtt
        require_tls: true
"""
    path = tmp_path / "p.yaml"
    path.write_text(text)
    assert main(["policy", "lint", str(path)]) == 0
    path.write_text(POLICY)
    assert main(["policy", "lint", "--policy", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:19: warning: opcua_without_sign: conduit scada-to-control into control (SL-T 2)" in out
