"""Protocol anomalies become alerts with a severity per kind; capture-loss kinds and learned ones do not."""

from __future__ import annotations

from detect_events import anomaly, learn_plant, observer, rules


def test_protocol_anomaly_raised_with_table_severity() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(anomaly(t, "modbus.invalid_protocol_id"))
    obs.handle(anomaly(t, "tcp.retransmission"))
    obs.flush(t)
    assert rules(alerts) == {"anomaly:protocol.modbus.invalid_protocol_id": 1}
    assert alerts[0].severity == 2


def test_kind_seen_while_learning_is_part_of_the_edge() -> None:
    obs, alerts = observer()
    obs.handle(anomaly(1_700_000_000.0, "modbus.invalid_length"))
    t = learn_plant(obs, seconds=11.0)
    obs.handle(anomaly(t, "modbus.invalid_length"))
    obs.flush(t)
    assert alerts == []
    assert ("protocol_anomaly", "10.0.0.1", "10.0.0.9", "modbus.invalid_length") in obs.baseline.sets[
        "protocol_anomaly"
    ]
