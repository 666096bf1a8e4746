"""Reconnaissance: unit-id, function-code, address scans; port scans; MQTT wildcard and sweeps."""

from __future__ import annotations

from detect_events import (
    BROKER,
    MASTER,
    PLC,
    ROGUE,
    learn_plant,
    modbus,
    mqtt_publish,
    mqtt_subscribe,
    observer,
    probe,
    rules,
)

from sensor.detect.recon import is_wildcard_everything


def test_unit_id_scan_counts_every_probed_unit() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i, unit in enumerate(range(2, 12)):
        obs.handle(modbus(t + i * 0.01, 3, 0, 1, unit=unit, status="unanswered"))
    obs.flush(t + 1)
    assert rules(alerts) == {"anomaly:modbus_unit_id_scan": 10, "anomaly:new_modbus_unit": 10}
    scan = next(a for a in alerts if a.rule == "anomaly:modbus_unit_id_scan")
    assert scan.mitre == ("T0846",)
    assert scan.evidence["items"] == list(range(2, 12))


def test_four_new_units_stay_below_the_scan_threshold() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for unit in range(2, 6):
        obs.handle(modbus(t, 3, 0, 1, unit=unit, status="unanswered"))
    obs.flush(t + 1)
    assert "anomaly:modbus_unit_id_scan" not in rules(alerts)


def test_function_code_scan() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i, fc in enumerate((7, 11, 12, 17, 24, 65)):
        obs.handle(modbus(t + i * 0.01, fc, 0, 1, status="exception", exception_code=1))
    obs.flush(t + 1)
    assert rules(alerts)["anomaly:modbus_function_code_scan"] == 6


def test_address_sweep() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(10):
        obs.handle(modbus(t + i * 0.01, 3, 100 + 10 * i, 10))
    obs.flush(t + 1)
    assert rules(alerts)["anomaly:modbus_address_sweep"] == 10  # count = distinct ranges probed


def test_tcp_port_scan_from_refused_connections() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for port in range(20, 35):
        obs.handle(probe(t, ROGUE, PLC, port))
    obs.flush(t + 1)
    assert rules(alerts) == {"anomaly:tcp_port_scan": 15}


def test_mqtt_wildcard_subscription_and_filter_shapes() -> None:
    assert (
        is_wildcard_everything("#") and is_wildcard_everything("+/+/#") and is_wildcard_everything("$SYS/#")
    )
    assert not is_wildcard_everything("plant/line1/#") and not is_wildcard_everything("plant/+/temp")
    obs, alerts = observer()
    obs.handle(mqtt_publish(0.0, "plant/t", "plc"))
    obs.handle(mqtt_subscribe(20.0, "#", "spy"))
    obs.flush(21.0)
    assert rules(alerts)["anomaly:mqtt_wildcard_subscription"] == 1
    wild = next(a for a in alerts if a.rule == "anomaly:mqtt_wildcard_subscription")
    assert wild.flow is not None and wild.flow.server_ip == BROKER and MASTER in wild.signature


def test_mqtt_topic_sweep() -> None:
    obs, alerts = observer()
    obs.handle(mqtt_publish(0.0, "plant/t", "plc"))
    for i in range(12):
        obs.handle(mqtt_publish(20.0 + i * 0.01, f"plant/probe/{i}", "plc"))
    obs.flush(21.0)
    assert rules(alerts)["anomaly:mqtt_topic_sweep"] == 12
