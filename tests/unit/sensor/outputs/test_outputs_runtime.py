"""The sensor wired with --config: rules raise alerts, the deliverer hands them to the configured sinks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from zw_paths import REPO

from sensor.config import apply_config_args
from sensor.runtime import SensorConfig, replay

sys.path.insert(0, str(REPO / "tests" / "replay"))
import builders


class Args:
    def __init__(self, config: str | None, rules: list[str] | None) -> None:
        self.config = config
        self.rules = rules


def test_replay_with_config_delivers_rule_alerts_to_an_eve_sink(tmp_path: Path) -> None:
    pcap = tmp_path / "mqtt.pcap"
    builders.rules_mqtt_attack(pcap)
    cfg = tmp_path / "zw.yaml"
    cfg.write_text(
        f"rules: {{paths: ['{REPO / 'rules'}']}}\n"
        "outputs: {outbox: box.db, sinks: [{name: file, type: eve, path: alerts.json}]}\n"
    )
    config = apply_config_args(SensorConfig(), Args(str(cfg), None))
    summary, _ = replay([pcap], config)
    lines = [json.loads(x) for x in (tmp_path / "alerts.json").read_text().splitlines()]
    assert sorted(x["alert"]["signature_id"] for x in lines) == list(range(9100101, 9100107))
    assert summary["rules"]["loaded"] == 22
    assert summary["outputs"]["outbox"]["delivered"] == 6


def test_without_flags_the_config_is_unchanged() -> None:
    config = SensorConfig()
    assert apply_config_args(config, Args(None, None)) is config


def test_with_a_store_alerts_are_delivered_after_they_are_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 8: every alert is stored in SQLite first (committed), then handed to the outputs."""
    import dataclasses
    import sqlite3

    from sensor.outputs.deliver import Deliverer
    from sensor.records import Alert

    pcap = tmp_path / "mqtt.pcap"
    builders.rules_mqtt_attack(pcap)
    cfg = tmp_path / "zw.yaml"
    cfg.write_text(
        f"rules: {{paths: ['{REPO / 'rules'}']}}\n"
        "outputs: {outbox: box.db, sinks: [{name: file, type: eve, path: alerts.json}]}\n"
    )
    db = tmp_path / "zw.db"
    config = dataclasses.replace(apply_config_args(SensorConfig(), Args(str(cfg), None)), db_path=db)
    committed_at_submit: list[bool] = []
    submit_many = Deliverer.submit_many

    def checking_submit_many(self: Deliverer, alerts: list[Alert]) -> None:
        with sqlite3.connect(db) as other:  # another connection sees only committed rows
            ids = {row[0] for row in other.execute("SELECT alert_id FROM alerts")}
        committed_at_submit.extend(a.alert_id in ids for a in alerts)
        submit_many(self, alerts)

    monkeypatch.setattr(Deliverer, "submit_many", checking_submit_many)
    summary, _ = replay([pcap], config)
    delivered = (tmp_path / "alerts.json").read_text().splitlines()
    assert summary["outputs"]["outbox"]["delivered"] == len(delivered) == 6
    assert committed_at_submit == [True] * 6
