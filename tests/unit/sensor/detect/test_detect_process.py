"""Process values: out of range, faster than ever, sustained drift (CUSUM + regression), counters."""

from __future__ import annotations

from collections import deque

from detect_events import learn_plant, modbus, observer, rules

from sensor.detect.process import regression


def _read(ts: float, v: int) -> object:
    return modbus(ts, 3, 0, 10, read_values=(0, 1, 2, 3, 4, 5, 6, v, 8, 9))


def test_value_out_of_range() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(_read(t, 900))  # type: ignore[arg-type]
    obs.flush(t)
    assert rules(alerts) == {"anomaly:process_value_out_of_range": 1}
    assert "holding register 7 on 10.0.0.9 unit 1 = 900, outside the learned 498..502" in alerts[0].signature


def test_value_changing_faster_than_ever_seen() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(_read(t, 498))  # type: ignore[arg-type]
    obs.handle(_read(t + 0.01, 509))  # type: ignore[arg-type]  # inside the margin, 1100/s
    obs.flush(t + 0.1)
    assert rules(alerts) == {"anomaly:process_value_rate": 1}


def test_slow_ramp_is_drift_before_out_of_range() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(30):
        obs.handle(_read(t + i * 0.5, 500 + i // 3))  # type: ignore[arg-type]  # +0.67 counts/s
    obs.flush(t + 16)
    got = rules(alerts)
    assert got.get("anomaly:process_value_drift", 0) >= 1
    assert "anomaly:process_value_out_of_range" not in got
    drift = next(a for a in alerts if a.rule == "anomaly:process_value_drift")
    assert "drifting up" in drift.signature and "CUSUM" in drift.signature


def test_noise_inside_the_learned_range_is_quiet() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(60):
        obs.handle(_read(t + i * 0.5, 500 + (i * 3) % 5 - 2))  # type: ignore[arg-type]
    obs.flush(t + 31)
    assert alerts == []


def test_counter_is_not_drift() -> None:
    obs, alerts = observer()
    t = 1_700_000_000.0
    for i in range(40):
        obs.handle(_read(t + i * 0.5, 1000 + i))  # type: ignore[arg-type]
    for i in range(40, 80):
        obs.handle(_read(t + i * 0.5, 1000 + i))  # type: ignore[arg-type]
    obs.flush(t + 41)
    assert "anomaly:process_value_drift" not in rules(alerts)
    assert "anomaly:process_value_out_of_range" not in rules(alerts)


def test_regression_slope_and_fit() -> None:
    slope, r2 = regression(deque([(float(i), 2.0 * i + 1) for i in range(10)]))
    assert abs(slope - 2.0) < 1e-9 and abs(r2 - 1.0) < 1e-9
    assert regression(deque([(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)])) == (0.0, 0.0)
