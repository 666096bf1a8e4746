"""Observer modes and aggregation; the CLI: learn, save, reuse, accept from EVE, diff, reset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from detect_events import ROGUE, learn_plant, modbus, observer, rules
from zw_paths import PCAPS

from sensor.cli import main
from sensor.detect.baseline import Baseline

ATTACK = PCAPS / "attack-modbus-new-host-write.pcap.gz"


def test_aggregation_window_and_deterministic_ids() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(3):
        obs.handle(modbus(t + i, 6, 50, 1, values=(1,), client=ROGUE))
    obs.handle(modbus(t + 100, 6, 50, 1, values=(1,), client=ROGUE))  # a new window
    obs.flush(t + 101)
    got = [(a.rule, a.count) for a in alerts if a.rule == "anomaly:rogue_master_write"]
    assert got == [("anomaly:rogue_master_write", 3), ("anomaly:rogue_master_write", 1)]
    again, alerts2 = observer()
    t2 = learn_plant(again, seconds=11.0)
    for i in range(3):
        again.handle(modbus(t2 + i, 6, 50, 1, values=(1,), client=ROGUE))
    again.flush(t2 + 3)
    assert alerts[0].alert_id == alerts2[0].alert_id


def test_until_told_learning() -> None:
    obs, alerts = observer(learn_for=None)
    t = learn_plant(obs, seconds=5.0)
    assert obs.learning
    obs.stop_learning(t)
    obs.handle(modbus(t, 6, 50, 1, values=(1,), client=ROGUE))
    obs.flush(t)
    assert rules(alerts) == {"anomaly:new_asset": 1, "anomaly:rogue_master_write": 1}


def _replay(tmp_path: Path, *extra: str) -> tuple[list[dict[str, object]], dict[str, object]]:
    eve, summary = tmp_path / "eve.json", tmp_path / "summary.json"
    eve.unlink(missing_ok=True)
    rc = main(["replay", "-q", str(ATTACK), "--eve", str(eve), "--summary-json", str(summary), *extra])
    assert rc == 0
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    alerts = [r for r in records if r["event_type"] == "alert" and r["alert"]["category"] == "anomaly"]
    return alerts, json.loads(summary.read_text())


def test_learn_save_accept_reuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not ATTACK.exists():
        pytest.skip(f"{ATTACK} missing (make it with pcaps/generate/attacks_gen.py)")
    base = tmp_path / "baseline.json"
    alerts, summary = _replay(tmp_path, "--learn-for", "5", "--baseline", str(base))
    assert sorted(a["zonewarden"]["rule"] for a in alerts) == [
        "anomaly:new_asset",
        "anomaly:rogue_master_write",
    ]
    assert summary["baseline"]["revision"] == 1  # type: ignore[index]
    saved = Baseline.load(base)
    assert saved.revision == 1 and saved.polls
    eve = tmp_path / "eve.json"
    for a in alerts:
        assert (
            main(["baseline", "accept", a["zonewarden"]["id"], "--baseline", str(base), "--eve", str(eve)])
            == 0
        )  # type: ignore[index]
    assert Baseline.load(base).revision == 3
    again, summary = _replay(tmp_path, "--baseline", str(base))
    assert again == [], [a["alert"]["signature"] for a in again]  # type: ignore[index]
    assert summary["baseline"]["mode"] == "detecting"  # type: ignore[index]
    capsys.readouterr()
    assert main(["baseline", "diff", "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "revision 3: accept" in out and "+ modbus_write" in out
    assert main(["baseline", "show", "--baseline", str(base)]) == 0
    assert "[modbus_function]" in capsys.readouterr().out
    assert main(["baseline", "reset", "--baseline", str(base), "--asset", ROGUE, "--relearn", "60"]) == 0
    reset = Baseline.load(base)
    assert reset.relearn == {ROGUE: 60.0} and ("asset", ROGUE) not in reset.sets["asset"]


def test_accept_unknown_alert_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "b.json"
    b = Baseline()
    b.commit("learn", 0.0)
    b.save(base)
    eve = tmp_path / "eve.json"
    eve.write_text("")
    assert main(["baseline", "accept", "nope", "--baseline", str(base), "--eve", str(eve)]) == 2
    assert "not in" in capsys.readouterr().err
