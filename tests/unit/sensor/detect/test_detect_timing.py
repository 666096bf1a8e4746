"""Timing: polling that stops (in packet time), polling far faster than learned, new periodic traffic."""

from __future__ import annotations

from detect_events import learn_plant, modbus, observer, rules

from sensor.detect.timing import stop_after


def test_polling_stop_is_noticed_as_packet_time_advances() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    stats = obs.baseline.polls[("10.0.0.1", "10.0.0.9", 1, 3, 0)]
    assert abs(stats.mean - 0.5) < 1e-6
    # only writes go on: the FC 3 series falls silent
    for i in range(12):
        obs.handle(modbus(t + i, 16, 20, 1, values=(6,)))
    assert rules(alerts) == {}  # not published yet: the alert aggregates until its window closes
    obs.flush(t + 12)
    assert rules(alerts) == {"anomaly:polling_stopped": 1}
    assert alerts[0].ts - (t - 0.5) >= stop_after(stats)
    assert "polling stopped: FC 3 (read_holding_registers)" in alerts[0].signature


def test_polling_far_faster_than_learned() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(8):
        obs.handle(modbus(t + i * 0.01, 3, 0, 10, read_values=(0, 1, 2, 3, 4, 5, 6, 500, 8, 9)))
    obs.flush(t + 0.1)
    assert rules(alerts) == {"anomaly:polling_too_fast": 7}  # 7 fast intervals in a row (raised at the 5th)


def test_new_periodic_traffic() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(10):
        obs.handle(modbus(t + i * 0.5, 3, 0, 10, unit=1, read_values=(0, 1, 2, 3, 4, 5, 6, 500, 8, 9)))
        obs.handle(modbus(t + i * 0.5 + 0.1, 3, 0, 10, read_values=(0, 1, 2, 3, 4, 5, 6, 500, 8, 9), unit=1))
    obs.flush(t + 6)
    assert "anomaly:new_periodic_traffic" not in rules(alerts)  # same series, just twice as often
