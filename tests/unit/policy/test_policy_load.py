"""Loading policy files: every problem is refused with ``file:line: what is wrong``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zw_paths import REPO

from policy.load import PolicyError, load_policy, parse_policy
from policy.model import Policy
from policy.schema import json_schema
from sensor.cli import main

DESIGN_EXAMPLE = """\
version: 1
site: plant-a
default: deny                       # traffic with no conduit is a violation
zones:
  - id: control
    security_level: {target: 3}
    members: [10.10.1.0/24]
  - id: scada
    members: [10.10.2.0/24]
conduits:
  - id: scada-to-control
    from: scada                      # initiator
    to: control                      # responder
    allow:
      - protocol: modbus
        functions: [read_holding_registers, read_input_registers]
        units: [1, 2]
        addresses: {holding_registers: "0-999"}
      - protocol: opcua
        services: [Read, Browse, CreateSubscription, Publish]
        min_security_mode: SignAndEncrypt
      - protocol: mqtt
        publish: ["plant/+/telemetry/#"]
        require_tls: true
"""


def test_design_example_loads() -> None:
    policy = parse_policy(DESIGN_EXAMPLE, "design.yaml")
    assert [z.id for z in policy.zones] == ["control", "scada"]
    conduit = policy.conduits[0]
    assert (conduit.from_zone, conduit.to_zone) == ("scada", "control")
    assert [e.protocol for e in conduit.allow] == ["modbus", "opcua", "mqtt"]


def test_members_of_every_kind_load() -> None:
    text = """\
version: 1
zones:
  - id: mixed
    members: [10.0.0.0/24, 10.0.1.5, "10.0.2.1-10.0.2.9", "aa:bb:cc:dd:ee:ff", "fd00::/64",
              {tag: plc}, {asset: hmi-1}]
conduits: []
"""
    policy = parse_policy(text)
    assert len(policy.zones[0].members) == 7


BROKEN = [
    pytest.param(
        "version: 1\nzones:\n  - id: a\n    members: [1.2.3.4\n  - id: b\n",
        5,
        "YAML syntax error",
        id="bad_yaml",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\n    membres: [1.2.3.4]\n",
        4,
        "zones[0].membres: unknown key 'membres' (did you mean 'members'?)",
        id="unknown_key",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\n    members:\n      - 10.0.0.0/24\n      - 10.0.0.300/24\n",
        6,
        "zones[0].members[1]: not an IP address, CIDR, IP range or MAC address: '10.0.0.300/24'",
        id="bad_cidr",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\n    members: [10.0.0.1/24]\n",
        4,
        "has host bits set (did you mean 10.0.0.0/24?)",
        id="host_bits",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: control\nconduits:\n  - id: c\n    from: control\n    to: contrl\n",
        7,
        "conduits[0].to: unknown zone 'contrl' (did you mean 'control'?)",
        id="unknown_zone",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\n  - id: b\n  - id: a\n",
        5,
        "zones[2].id: duplicate zone id 'a' (first on line 3)",
        id="duplicate_zone_id",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\nconduits:\n  - {id: c, from: a, to: a}\n"
        "  - {id: c, from: a, to: a}\n",
        6,
        "conduits[1].id: duplicate conduit id 'c' (first on line 5)",
        id="duplicate_conduit_id",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\n    intra_zone: deny\n    intra_zone: allow\n",
        5,
        "duplicate key 'intra_zone' (first on line 4)",
        id="duplicate_key",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\nconduits:\n  - id: c\n    from: a\n    to: a\n    allow:\n"
        "      - protocol: modbus\n        functions: [read, 3, bogus]\n",
        10,
        "conduits[0].allow[0].functions[2]: unknown Modbus function name or category 'bogus'",
        id="bad_function",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\nconduits:\n  - id: c\n    from: a\n    to: a\n    allow:\n"
        "      - protocol: mqtt\n        publish: ['a/#/b']\n",
        10,
        "'#' must be the whole last level",
        id="bad_topic_filter",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\nconduits:\n  - id: c\n    from: a\n    to: a\n    allow:\n"
        "      - protocol: opcua\n        min_security_mode: Encrypt\n",
        10,
        "conduits[0].allow[0].min_security_mode: Input should be 'None', 'Sign' or 'SignAndEncrypt'",
        id="bad_mode",
    ),
    pytest.param(
        "version: 1\nzones:\n  - id: a\nconduits:\n  - id: c\n    from: a\n    to: a\n    allow:\n"
        "      - protocol: modbus\n        addresses: {holding_registers: '10-5'}\n",
        10,
        "range 10-5 runs backwards",
        id="backwards_range",
    ),
    pytest.param("version: 2\n", 1, "version: Input should be 1", id="bad_version"),
    pytest.param("zones: []\n", 1, "version: required key missing", id="missing_version"),
    pytest.param("", 1, "empty policy file", id="empty"),
    pytest.param("- a\n- b\n", 1, "a policy file is a mapping", id="not_a_mapping"),
]


@pytest.mark.parametrize(("text", "line", "message"), BROKEN)
def test_broken_file_names_line_and_problem(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    lines = str(info.value).splitlines()
    assert any(ln.startswith(f"{path}:{line}: ") and message in ln for ln in lines), lines


def test_every_problem_reported_in_line_order(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nzones:\n  - id: a\n    members: [300.1.1.1]\n  - id: a\n    colour: red\n"
        "conduits:\n  - {id: c, from: a, to: nowhere}\n"
    )
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert [p.line for p in info.value.problems] == [4, 5, 6, 8]


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]")
    with pytest.raises(PolicyError, match="too large or too deeply nested"):
        parse_policy("\n".join(lines) + "\n")


def test_schema_is_json_schema_of_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/draft/2020-12")
    assert schema == json.loads(json.dumps(json_schema()))
    assert set(schema["properties"]) == {f.alias or n for n, f in Policy.model_fields.items()}
    conduit = schema["$defs"]["Conduit"]
    assert "from" in conduit["properties"] and conduit["additionalProperties"] is False


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(DESIGN_EXAMPLE)
    assert main(["policy", "validate", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nzones:\n  - id: a\n    members: [nonsense]\n")
    assert main(["policy", "validate", str(bad)]) == 2
    assert f"{bad}:4: zones[0].members[0]" in capsys.readouterr().err


def test_replay_with_invalid_policy_exits_2_with_file_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nzones:\n  - id: a\n    members: [10.0.0.300/24]\n")
    eve = tmp_path / "eve.json"
    rc = main(
        [
            "replay",
            "-q",
            str(REPO / "pcaps/modbus-pymodbus-polling.pcap"),
            "--policy",
            str(bad),
            "--eve",
            str(eve),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{bad}:4: zones[0].members[0]: not an IP address" in err
    assert "Traceback" not in err
    assert not eve.exists()  # refused before anything was opened
