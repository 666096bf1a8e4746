"""Novelty: never-seen assets, edges, function codes, ranges, writes and written values."""

from __future__ import annotations

from detect_events import MASTER, PLC, ROGUE, learn_plant, modbus, observer, opcua, rules


def test_known_traffic_after_learning_raises_nothing() -> None:
    obs, alerts = observer(learn_for=10.0)
    t = learn_plant(obs, seconds=20.0)
    obs.flush(t)
    assert obs.learned_until is not None
    assert alerts == []


def test_new_function_code_is_explained_with_pair_and_unit() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(modbus(t, 4, 0, 2, read_values=(1, 2)))
    obs.flush(t)
    assert rules(alerts) == {"anomaly:new_function_code": 1}
    assert alerts[0].signature.startswith(
        f"never seen: FC 4 (read_input_registers) from {MASTER} to {PLC} unit 1"
    )
    assert alerts[0].category == "anomaly"
    assert ["modbus_function", MASTER, PLC, 1, 4] in alerts[0].evidence["baseline"]


def test_write_to_never_written_range_names_the_registers() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(modbus(t, 16, 150, 10, values=(1,) * 10))
    obs.flush(t)
    assert rules(alerts) == {"anomaly:new_write_range": 1}
    assert "holding registers 150-159" in alerts[0].signature
    assert alerts[0].mitre == ("T0836", "T0855")


def test_new_host_writing_is_new_asset_and_rogue_master() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(modbus(t, 6, 50, 1, values=(9999,), client=ROGUE))
    obs.flush(t)
    assert rules(alerts) == {"anomaly:new_asset": 1, "anomaly:rogue_master_write": 1}
    rogue = next(a for a in alerts if a.rule == "anomaly:rogue_master_write")
    assert "T0848" in rogue.mitre and "never wrote before" in rogue.signature


def test_written_value_outside_learned_range() -> None:
    obs, alerts = observer()
    t = learn_plant(obs, seconds=11.0)
    obs.handle(modbus(t, 16, 20, 1, values=(500,)))
    obs.flush(t)
    assert rules(alerts) == {"anomaly:write_value_out_of_range": 1}
    assert "outside the learned 5..7" in alerts[0].signature


def test_opcua_write_to_new_node() -> None:
    obs, alerts = observer()
    obs.handle(opcua(0.0, "Write", {"nodes_to_write": [{"node_id": "ns=2;i=3"}]}))
    obs.handle(opcua(20.0, "Write", {"nodes_to_write": [{"node_id": "ns=2;i=9"}]}))
    obs.flush(20.0)
    assert rules(alerts) == {"anomaly:new_opcua_write_node": 1}
    assert "ns=2;i=9" in alerts[0].signature
