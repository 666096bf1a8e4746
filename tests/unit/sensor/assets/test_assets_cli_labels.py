"""``zonewarden assets tag`` / ``untag``: names and tags from the command line, shown and audited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from zw_paths import PCAPS

from sensor.cli import main


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "z.db"
    assert main(["replay", "-q", str(PCAPS / "modbus-pymodbus-device-id.pcap"), "--db", str(path)]) == 0
    return path


def test_cli_tag_then_list_show_and_filter(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["assets", "tag", "127.0.0.1", "--name", "Filler PLC", "--tag", "line1", "--tag", "plc"]
    assert main([*args, "--db", str(db)]) == 0
    assert "127.0.0.1: name Filler PLC; tags line1, plc" in capsys.readouterr().out
    assert main(["assets", "--db", str(db), "--tag", "line1"]) == 0
    out = capsys.readouterr().out
    assert "Filler PLC" in out and "[line1,plc]" in out and "1 asset(s)" in out
    assert main(["assets", "--db", str(db), "--tag", "line9"]) == 0
    assert "0 asset(s)" in capsys.readouterr().out
    assert main(["assets", "show", "127.0.0.1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "given name Filler PLC; tags line1, plc" in out
    assert "calls itself" in out  # the FC43 product name is still known
    assert main(["assets", "show", "127.0.0.1", "--db", str(db), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tags"] == ["line1", "plc"] and shown["given_name"] == "Filler PLC"
    assert shown["inferred_name"] and shown["inferred_name"] != "Filler PLC"


def test_cli_untag_tag_name_and_all(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--db", str(db), "--json"]
    assert main(["assets", "tag", "127.0.0.1", "--name", "P", "--tag", "a", "--tag", "b", *base]) == 0
    capsys.readouterr()
    assert main(["assets", "untag", "127.0.0.1", "--tag", "a", *base]) == 0
    assert json.loads(capsys.readouterr().out)["tags"] == ["b"]
    assert main(["assets", "untag", "127.0.0.1", "--name", *base]) == 0
    cleared = json.loads(capsys.readouterr().out)
    assert cleared["name"] == "" and cleared["tags"] == ["b"] and cleared["updated_by"].startswith("cli:")
    assert main(["assets", "untag", "127.0.0.1", "--all", *base]) == 0
    assert json.loads(capsys.readouterr().out)["tags"] == []


def test_cli_tag_an_address_not_seen_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "new.db"
    assert main(["assets", "tag", "10.1.2.3", "--tag", "spare", "--db", str(db)]) == 0
    assert "not seen yet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["assets", "tag", "127.0.0.1"],  # nothing to do
        ["assets", "tag", "127.0.0.1", "--tag", "two words"],
        ["assets", "tag", "127.0.0.1", "--name", "bell\x07"],
        ["assets", "tag", "not-an-ip", "--tag", "x"],
        ["assets", "untag", "127.0.0.1"],
    ],
)
def test_cli_tag_refuses_bad_input_with_exit_2(
    db: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*args, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zonewarden: ") and "Traceback" not in err


def test_cli_label_changes_are_in_the_audit_log(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.audit import AuditLog

    assert main(["assets", "tag", "127.0.0.1", "--tag", "plc", "--db", str(db)]) == 0
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rows = conn.execute("SELECT who, what, object, result FROM audit_log").fetchall()
        assert AuditLog(conn).verify() == []
    finally:
        conn.close()
    who, what, obj, result = rows[-1]
    assert who.startswith("cli:") and what == "assets.labels" and obj == "asset:127.0.0.1"
    assert '"tags": ["plc"]' in result
