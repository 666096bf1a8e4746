"""``zonewarden graph paths`` on a store written by ``replay --db`` from real captures given plant
addresses (tests/zw_reach.py): one path a line, ``--json`` the API's document, errors one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zw_reach import GATEWAY, JUMP_HOST, SAFETY_PLC, SCADA, plant_captures, plant_policy

from sensor.assets.reach import paths_document
from sensor.cli import main
from sensor.store.sqlite import Store

OPCUA_HOP = (
    "-[opcua/4840 ActivateSession,Browse,Call,CloseSecureChannel,CloseSession,CreateMonitoredItems,…]->"
)
WRITES_HOP = "-[modbus/502 fc 1,3,5,6,8,15,… !policy; tcp/502]->"  # the writer's stray connection: tcp
MQTT_HOP = "-[mqtt/1883 pub plant/line1/status,plant/line1/telemetry sub plant/+/telemetry !policy]->"
READS_HOP = "-[modbus/502 fc 1,3,4; tcp/502]->"


def _against(hop: str) -> str:
    """A hop's label when the path runs against the connections: ``<-[...]-``."""
    return hop.replace("-[", "<-[", 1).replace("]->", "]-")


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The store of a replay of the plant against its policy, and the policy file."""
    directory = tmp_path_factory.mktemp("plant")
    policy = plant_policy(directory / "policy.yaml")
    db = directory / "z.db"
    captures = plant_captures(directory / "captures")
    assert main(["replay", "-q", *map(str, captures), "--db", str(db), "--policy", str(policy)]) == 0
    return db, policy


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["graph", "paths", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_paths_one_a_line_with_protocols_and_operations(
    plant: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = plant
    code, out, err = _run(capsys, JUMP_HOST, SAFETY_PLC, "--db", str(db))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"{JUMP_HOST} {OPCUA_HOP} {SCADA} {WRITES_HOP} {SAFETY_PLC}",
        f"{JUMP_HOST} {MQTT_HOP} {GATEWAY} {READS_HOP} {SAFETY_PLC}",
        f"2 path(s) from {JUMP_HOST} to {SAFETY_PLC} within 4 hop(s)",
    ]


def test_cli_paths_with_policy_name_zones(
    plant: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, policy = plant
    code, out, _ = _run(
        capsys, JUMP_HOST, SAFETY_PLC, "--db", str(db), "--policy", str(policy), "--limit", "1"
    )
    assert code == 0
    assert out.splitlines() == [
        f"{JUMP_HOST} (it) {OPCUA_HOP} {SCADA} (scada) {WRITES_HOP} {SAFETY_PLC} (safety)",
        f"1 path(s) from {JUMP_HOST} to {SAFETY_PLC} within 4 hop(s); more may exist (limit or search budget "
        "reached)",
    ]


def test_cli_paths_directed_by_default_undirected_on_request(
    plant: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = plant
    code, out, err = _run(capsys, SAFETY_PLC, JUMP_HOST, "--db", str(db))
    assert (code, out, err) == (1, "no path within 4 hop(s)\n", "")  # exit 1: none found, as grep
    code, out, _ = _run(capsys, SAFETY_PLC, JUMP_HOST, "--db", str(db), "--undirected")
    assert code == 0
    first = out.splitlines()[0]
    assert first == f"{SAFETY_PLC} {_against(WRITES_HOP)} {SCADA} {_against(OPCUA_HOP)} {JUMP_HOST}"
    assert out.splitlines()[-1].endswith("within 4 hop(s), either way")


def test_cli_paths_json_is_the_shared_document(
    plant: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    db, policy = plant
    code, out, _ = _run(
        capsys, JUMP_HOST, SAFETY_PLC, "--db", str(db), "--json", "--max-hops", "8", "--undirected"
    )
    assert code == 0
    document = json.loads(out)
    store = Store(db, readonly=True)
    try:
        expected = paths_document(store, JUMP_HOST, SAFETY_PLC, max_hops=8, directed=False)
    finally:
        store.close()
    assert document == expected
    assert (document["max_hops"], document["directed"], document["policy_loaded"]) == (8, False, False)
    assert [[hop["server"] for hop in path] for path in document["paths"]] == [
        [SCADA, SAFETY_PLC],
        [GATEWAY, SAFETY_PLC],
    ]
    code, out, _ = _run(capsys, JUMP_HOST, SAFETY_PLC, "--db", str(db), "--json", "--policy", str(policy))
    zoned = json.loads(out)
    assert zoned["policy_loaded"] and zoned["paths"][1][0]["crosses_zones"] is True
    assert zoned["paths"][1][0]["edges"][0]["policy"]["alerts"][0]["rule"] == "policy:it->gateway:no_conduit"
    assert zoned["paths"][1][1]["policy_status"] == "allowed"  # no alert, a policy given


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["10.1.1.5", "10.3.0.99"], "zonewarden: error: no asset 10.3.0.99 in the store (target)"),
        (["10.9.9.9", "10.3.0.10"], "zonewarden: error: no asset 10.9.9.9 in the store (source)"),
        (
            ["10.1.1.500", "10.3.0.10"],
            "zonewarden: error: source '10.1.1.500' is not an IPv4 or IPv6 address",
        ),
        (["10.1.1.5", "plc"], "zonewarden: error: target 'plc' is not an IPv4 or IPv6 address"),
        (["10.1.1.5", "10.3.0.10", "--max-hops", "0"], "zonewarden: error: --max-hops is 1 to 8, not 0"),
        (["10.1.1.5", "10.3.0.10", "--max-hops", "9"], "zonewarden: error: --max-hops is 1 to 8, not 9"),
        (["10.1.1.5", "10.3.0.10", "--limit", "101"], "zonewarden: error: --limit is 1 to 100, not 101"),
    ],
)
def test_cli_paths_errors_are_one_line_exit_2(
    plant: tuple[Path, Path], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    db, _ = plant
    assert _run(capsys, *args, "--db", str(db)) == (2, "", message + "\n")


def test_cli_paths_without_a_store_or_with_a_broken_policy_exit_2(
    plant: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, JUMP_HOST, SAFETY_PLC, "--db", str(tmp_path / "none.db"))
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "no such database" in err
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 1\nzones:\n  - id: a\n    members: [nonsense]\n  - id: a\n    members: []\n")
    code, out, err = _run(capsys, JUMP_HOST, SAFETY_PLC, "--db", str(plant[0]), "--policy", str(broken))
    assert (code, out) == (2, "") and len(err.splitlines()) == 1
    assert err.startswith(f"zonewarden: error: {broken}:") and "Traceback" not in err
