"""Impairment and control: FC 8, program codes, write bursts, exception storms, OPC UA, MQTT."""

from __future__ import annotations

from detect_events import (
    MASTER,
    ROGUE,
    learn_plant,
    modbus,
    mqtt_connect,
    mqtt_publish,
    observer,
    opcua,
    rules,
)


def test_force_listen_only_and_restart() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(modbus(t, 8, None, None, subfunction=4, status="unanswered"))  # type: ignore[arg-type]
    obs.handle(modbus(t + 1, 8, None, None, subfunction=1))  # type: ignore[arg-type]
    obs.flush(t + 2)
    got = rules(alerts)
    assert got["anomaly:modbus_force_listen_only"] == 1 and got["anomaly:modbus_restart_communications"] == 1
    listen = next(a for a in alerts if a.rule == "anomaly:modbus_force_listen_only")
    assert listen.mitre == ("T0814",) and listen.severity == 1


def test_program_and_firmware_codes() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(modbus(t, 90, None, None, status="unanswered"))  # type: ignore[arg-type]
    obs.handle(modbus(t, 125, None, None, status="unanswered"))  # type: ignore[arg-type]
    obs.flush(t + 1)
    got = rules(alerts)
    assert got["anomaly:modbus_program_function"] == 1 and got["anomaly:modbus_firmware_function"] == 1


def test_write_burst_against_learned_peak() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(12):
        obs.handle(modbus(t + i * 0.05, 16, 20, 1, values=(6,)))
    obs.flush(t + 1)
    # learning ran to 10 s and its last write (at 10.01 s) is judged too: 13 writes within 5 s, the
    # count when the threshold (10) is crossed plus one per later write
    assert rules(alerts) == {"anomaly:modbus_write_burst": 13}


def test_exception_storm() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    for i in range(10):
        obs.handle(modbus(t + i * 0.5, 3, 0, 10, status="exception", exception_code=4))
    obs.flush(t + 5)
    assert rules(alerts) == {"anomaly:modbus_exception_storm": 10}


def test_opcua_unexpected_call_and_node_management() -> None:
    obs, alerts = observer()
    obs.handle(opcua(0.0, "Call", {"methods_to_call": [{"object_id": "ns=2;i=1", "method_id": "ns=2;i=4"}]}))
    obs.handle(opcua(20.0, "Call", {"methods_to_call": [{"object_id": "ns=2;i=1", "method_id": "ns=2;i=4"}]}))
    obs.handle(
        opcua(20.0, "Call", {"methods_to_call": [{"object_id": "ns=2;i=1", "method_id": "ns=2;i=99"}]})
    )
    obs.handle(opcua(20.0, "DeleteNodes", {}))
    obs.flush(21.0)
    assert rules(alerts) == {
        "anomaly:opcua_unexpected_call": 1,
        "anomaly:opcua_address_space_change": 1,
        "anomaly:new_opcua_service": 1,
    }


def test_mqtt_command_retained_overwrite_and_takeover() -> None:
    obs, alerts = observer()
    obs.handle(mqtt_connect(0.0, "plc", client=MASTER))
    obs.handle(mqtt_publish(0.1, "plant/l1/cmd/valve", "ctl"))
    obs.handle(mqtt_publish(0.2, "plant/l1/status", "plc", retain=True))
    obs.handle(mqtt_publish(20.0, "plant/l1/cmd/valve", "ctl"))  # known publisher: fine
    obs.handle(mqtt_publish(20.1, "plant/l1/cmd/valve", "laptop"))
    obs.handle(mqtt_publish(20.2, "plant/l1/status", "ctl", retain=True))
    obs.handle(mqtt_connect(20.3, "plc", client=ROGUE, cport=40001))
    obs.flush(21.0)
    got = rules(alerts)
    assert got["anomaly:mqtt_command_from_new_client"] == 1
    assert got["anomaly:mqtt_retained_overwrite"] == 1
    assert got["anomaly:mqtt_client_id_takeover"] == 1
