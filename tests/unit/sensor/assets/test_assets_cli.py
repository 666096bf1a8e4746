"""``zonewarden assets``, ``assets show`` and ``graph export`` on a store written by ``replay --db``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import pytest
from zw_paths import PCAPS

from sensor.cli import main


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "z.db"
    pcaps = [PCAPS / "modbus-pymodbus-device-id.pcap", PCAPS / "mqtt-v311-mosquitto.pcap"]
    assert main(["replay", "-q", *map(str, pcaps), "--db", str(path)]) == 0
    return path


def test_cli_assets_lists_identity_roles_protocols(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "127.0.0.1" in out and "Zonewarden simulated PLC" in out
    assert "modbus_server" in out and "mqtt_broker" in out and "1 asset(s)" in out
    assert main(["assets", "--db", str(db), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["ip"] == "127.0.0.1" and {"modbus", "mqtt"} <= set(rows[0]["protocols"])


def test_cli_assets_show_explains_roles(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assets", "show", "127.0.0.1", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "modbus.vendor_name = Zonewarden Test Vendor" in out
    assert "mqtt_broker: accepts MQTT on port 1883" in out
    assert "plant" in out and "telemetry" in out  # topic tree
    assert main(["assets", "show", "127.0.0.1", "--db", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mqtt_topic_tree"]["plant"]["line1"]["telemetry"]["_clients"]["publishers"] == ["127.0.0.1"]
    assert main(["assets", "show", "192.0.2.77", "--db", str(db)]) == 1


def test_cli_assets_missing_store_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assets", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["json", "graphml", "dot", "svg"])
def test_cli_graph_export(db: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"graph.{fmt}"
    assert main(["graph", "export", "--format", fmt, "--db", str(db), "--out", str(out)]) == 0
    data = out.read_bytes()
    if fmt == "json":
        g = nx.node_link_graph(json.loads(data), edges="edges")
        assert {d["protocol"] for _u, _v, d in g.edges(data=True)} >= {"modbus", "mqtt"}
    elif fmt == "graphml":
        assert nx.read_graphml(out).number_of_nodes() == 1
    elif fmt == "dot":
        assert data.startswith(b"digraph")
    else:
        assert ET.fromstring(data).tag.endswith("svg")


def test_cli_replay_without_db_writes_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZONEWARDEN_DATA", str(tmp_path / "data"))
    summary = tmp_path / "s.json"
    pcap = PCAPS / "modbus-pymodbus-polling.pcap"
    assert main(["replay", "-q", str(pcap), "--summary-json", str(summary)]) == 0
    assert not (tmp_path / "data").exists()
    data = json.loads(summary.read_text())
    assert (data["assets"], data["roles"]["modbus_server"]) == (1, ["127.0.0.1"])
