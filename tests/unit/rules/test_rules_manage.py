"""`zonewarden rules update|list|enable|disable` with the real suricata-update (no Suricata binary)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from zw_paths import REPO

from rules import manage
from rules.cli import register

SHIPPED = REPO / "rules"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A copy of the shipped rules/ (the conf files get edited) plus a second, operator source."""
    d = tmp_path / "conf"
    shutil.copytree(SHIPPED, d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.rules").write_text(
        'alert modbus any any -> any any (msg:"site FC 66"; modbus: function 66; sid:9150001; rev:2;)\n'
        'alert http any any -> any any (msg:"web"; content:"x"; http_uri; sid:9150002; rev:1;)\n'
    )
    text = (d / "update.yaml").read_text()
    text = text.replace('      path: "."\n', f'      path: "."\n    - name: site\n      path: {site}\n')
    (d / "update.yaml").write_text(text)
    return d


@pytest.fixture
def no_suricata(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PATH without a `suricata` binary, so the run does not depend on the host."""
    empty = tmp_path / "bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    rc = int(args.func(args))
    return rc, capsys.readouterr().out


def test_update_offline_runs_suricata_update_and_keeps_provenance(
    rules_dir: Path, tmp_path: Path, no_suricata: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    rc, out = _cli(
        ["rules", "update", "--offline", "--rules-dir", str(rules_dir), "--data-dir", str(data)], capsys
    )
    assert rc == 0, out
    active = (data / "active" / "suricata.rules").read_text()
    assert "sid:9100001;" in active and "sid:9150001;" in active  # written by suricata-update
    records = {r["sid"]: r for r in json.loads((data / "active" / "provenance.json").read_text())}
    assert len(records) == 24
    assert records[9100101] | {"msg": ""} == {
        "gid": 1,
        "sid": 9100101,
        "rev": 1,
        "msg": "",
        "action": "alert",
        "enabled": True,
        "status": "loaded",
        "reason": "",
        "source": "zonewarden",
        "file": "zonewarden-mqtt.rules",
        "url": "",
    }
    assert (records[9150001]["source"], records[9150001]["rev"]) == ("site", 2)
    assert records[9150002]["status"] == "unsupported"

    rc, out = _cli(["rules", "list", "--unsupported", "--json", "--data-dir", str(data)], capsys)
    assert [r["sid"] for r in json.loads(out)] == [9150002]


def test_disable_then_update_applies_disable_conf(
    rules_dir: Path, tmp_path: Path, no_suricata: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    base = ["--rules-dir", str(rules_dir), "--data-dir", str(data)]
    assert _cli(["rules", "update", "--offline", *base], capsys)[0] == 0
    assert _cli(["rules", "disable", "9100009", *base], capsys)[0] == 0
    assert "1:9100009" in (rules_dir / "disable.conf").read_text()
    assert _cli(["rules", "update", "--offline", *base], capsys)[0] == 0
    records = {r["sid"]: r for r in json.loads((data / "active" / "provenance.json").read_text())}
    assert records[9100009]["enabled"] is False and records[9100009]["status"] == "disabled"
    assert _cli(["rules", "enable", "9100009", *base], capsys)[0] == 0
    assert "9100009" not in (rules_dir / "disable.conf").read_text()
    assert "1:9100009" in (rules_dir / "enable.conf").read_text()
    assert _cli(["rules", "update", "--offline", *base], capsys)[0] == 0
    records = {r["sid"]: r for r in json.loads((data / "active" / "provenance.json").read_text())}
    assert records[9100009]["enabled"] is True


def test_online_update_with_file_sources_only(rules_dir: Path, tmp_path: Path, no_suricata: None) -> None:
    result = manage.update(rules_dir, tmp_path / "data", offline=False)
    assert result.returncode == 0, result.log
    assert result.rules == 24 and result.by_source == {"site": 2, "zonewarden": 22}


def test_offline_with_a_never_downloaded_url_source_is_refused(rules_dir: Path, tmp_path: Path) -> None:
    from sensor.errors import UserError

    text = (rules_dir / "update.yaml").read_text()
    text = text.replace(
        "    - name: site\n",
        "    - name: remote\n      url: https://rules.invalid/x.tar.gz\n    - name: site\n",
    )
    (rules_dir / "update.yaml").write_text(text)
    with pytest.raises(UserError, match="never downloaded"):
        manage.update(rules_dir, tmp_path / "data", offline=True)


FAKE_SURICATA = """#!/bin/sh
# Stands in for a Suricata binary beside zonewarden: suricata-update asks it for its build info
# and for the configuration it would run with (--dump-config), and disables the rules of every
# app layer not enabled there.
case "$*" in
  *--build-info*) echo "This is Suricata version 7.0.8 RELEASE"; echo "Features: RUST";;
  *--dump-config*)
    echo "app-layer.protocols.modbus.enabled = $MODBUS"
    echo "app-layer.protocols.mqtt.enabled = yes";;
  *-V*) echo "This is Suricata version 7.0.8 RELEASE";;
esac
"""


@pytest.mark.parametrize(("modbus_enabled", "expect_enabled"), [("yes", True), ("no", False)])
def test_suricata_conf_decides_whether_modbus_rules_survive(
    rules_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    modbus_enabled: str,
    expect_enabled: bool,
) -> None:
    """With a Suricata on the host, suricata-update disables rules of app layers its config disables."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "suricata"
    fake.write_text(FAKE_SURICATA)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("MODBUS", modbus_enabled)
    result = manage.update(rules_dir, tmp_path / "data", offline=True)
    assert result.returncode == 0, result.log
    records = {r["sid"]: r for r in json.loads(result.provenance.read_text())}
    assert records[9100001]["enabled"] is expect_enabled
    assert records[9100101]["enabled"] is True  # mqtt stays enabled either way
