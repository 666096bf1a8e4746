"""The baseline: facts, intervals, JSON round trip, diff, revisions, per-asset reset."""

from __future__ import annotations

from pathlib import Path

import pytest
from detect_events import MASTER, PLC, learn_plant, observer

from sensor.detect.baseline import Baseline, diff, fact_from_json, merge_interval
from sensor.errors import UserError


def test_intervals_merge_and_cover() -> None:
    iv: list[list[int]] = []
    assert merge_interval(iv, 10, 19)
    assert merge_interval(iv, 20, 29)  # touching: joined
    assert not merge_interval(iv, 12, 25)
    assert merge_interval(iv, 40, 40)
    assert iv == [[10, 29], [40, 40]]
    b = Baseline()
    b.add(("modbus_write", MASTER, PLC, 1, "holding_registers", 10, 29))
    assert b.knows(("modbus_write", MASTER, PLC, 1, "holding_registers", 12, 20))
    assert not b.knows(("modbus_write", MASTER, PLC, 1, "holding_registers", 25, 35))


def test_json_round_trip_and_diff(tmp_path: Path) -> None:
    obs, _ = observer(learn_for=None)
    learn_plant(obs, seconds=5.0)
    b = obs.baseline
    assert b.commit("learn", 5.0)
    path = tmp_path / "b.json"
    b.save(path)
    again = Baseline.load(path)
    assert again.snapshot() == b.snapshot()
    assert diff(b, again) == {"added": [], "removed": [], "changed": []}
    assert again.add(("modbus_function", MASTER, PLC, 1, 4))
    assert again.commit("accept", 6.0, "test")
    assert again.revision == 2
    changes = diff(b, again)
    assert changes["added"] == [
        'modbus_function {"client": "10.0.0.1", "function": 4, "server": "10.0.0.9", "unit": 1}'
    ]
    assert again.history[-1]["added"] == changes["added"]


def test_reset_asset_forgets_everything_about_it() -> None:
    obs, _ = observer(learn_for=None)
    learn_plant(obs, seconds=5.0)
    b = obs.baseline
    removed = b.reset_asset(PLC, relearn_seconds=30)
    assert removed > 5
    assert not any(PLC in f for s in b.sets.values() for f in s)
    assert not b.polls and not b.values and b.relearn == {PLC: 30}
    assert ("asset", MASTER) in b.sets["asset"]


def test_bad_files_are_user_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(UserError, match="not JSON"):
        Baseline.load(p)
    p.write_text('{"format": "other"}')
    with pytest.raises(UserError, match="not a zonewarden baseline"):
        Baseline.load(p)


def test_fact_from_json_rejects_garbage() -> None:
    assert fact_from_json(["asset", "1.2.3.4"]) == ("asset", "1.2.3.4")
    assert fact_from_json(["process_range", ["modbus", "h", 1, "t", 7], 5]) == (
        "process_range",
        ("modbus", "h", 1, "t", 7),
        5.0,
    )
    with pytest.raises(ValueError):
        fact_from_json({"asset": 1})
    with pytest.raises(ValueError):
        Baseline().add(("nonsense", 1))
