"""PolicyObserver: aggregation of repeated violations, flush, live reload keeping the old policy on error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import policy.observer
from policy.index import CompiledPolicy
from policy.load import parse_policy
from policy.observer import PolicyObserver
from policy.reload import PolicyWatcher
from sensor.dissectors.modbus import codes
from sensor.dissectors.modbus.events import ModbusRequest, ModbusTransaction
from sensor.dissectors.mqtt import codes as mqtt_codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Publish
from sensor.records import Alert, FlowRef, FlowSummary

POLICY = """\
version: 1
aggregation_window: 300
zones:
  - id: hmi
    members: [10.0.0.0/24]
  - id: plc
    members: [10.0.1.0/24]
  - id: tagged
    members: [{tag: safety-plc}]
conduits:
  - id: hmi-to-plc
    from: hmi
    to: plc
    allow:
      - protocol: modbus
        functions: [read]
"""


def tx(ts: float, fc: int = 3, client: str = "10.0.0.5", server: str = "10.0.1.5") -> ModbusTransaction:
    return ModbusTransaction(
        ts=ts,
        flow=FlowRef(1, "1:x", "tcp", client, 40000, server, 502),
        transaction_id=1,
        unit_id=1,
        function=fc,
        function_name=codes.function_name(fc),
        category=codes.category(fc),
        code_class=codes.code_class(fc),
        status="ok",
        request=ModbusRequest(function=fc, address=3, quantity=1, values=(1,)),
    )


def observer(text: str = POLICY, asset_tags: object = None) -> tuple[PolicyObserver, list[Alert]]:
    alerts: list[Alert] = []
    compiled = CompiledPolicy(parse_policy(text), asset_tags)  # type: ignore[arg-type]
    return PolicyObserver(compiled, alerts.append), alerts


def test_repeated_violations_aggregate_within_the_window() -> None:
    obs, alerts = observer()
    for i in range(50):
        obs.handle(tx(1000.0 + i, fc=6))  # 50 writes in 50 s
    obs.handle(tx(1000.0, fc=3))  # allowed
    assert alerts == []  # still pending
    obs.handle(tx(1400.0, fc=6))  # window passed: the first aggregate goes out, a new one starts
    assert len(alerts) == 1
    first = alerts[0]
    assert (first.rule, first.count, first.ts, first.last_ts) == (
        "policy:hmi-to-plc:function_not_allowed",
        50,
        1000.0,
        1049.0,
    )
    assert (first.src_zone, first.dest_zone, first.conduit, first.category) == (
        "hmi",
        "plc",
        "hmi-to-plc",
        "policy",
    )
    assert first.evidence["operation"]["function"] == 6
    obs.flush(1500.0)
    assert [a.count for a in alerts] == [50, 1]
    assert obs.section()["violations"] == 51 and obs.section()["operations"] == 52


def test_different_hosts_are_different_alerts() -> None:
    obs, alerts = observer()
    obs.handle(tx(1.0, fc=6, server="10.0.1.5"))
    obs.handle(tx(2.0, fc=6, server="10.0.1.6"))
    obs.handle(tx(3.0, fc=16, server="10.0.1.6"))
    obs.flush(10.0)
    assert sorted((a.flow.server_ip, a.count) for a in alerts if a.flow) == [("10.0.1.5", 1), ("10.0.1.6", 2)]
    assert "distinct_operations" in next(a for a in alerts if a.count == 2).evidence


def test_alert_ids_are_deterministic() -> None:
    ids = []
    for _ in range(2):
        obs, alerts = observer()
        obs.handle(tx(5.0, fc=6))
        obs.flush(6.0)
        ids.append(alerts[0].alert_id)
    assert ids[0] == ids[1]


def test_asset_tag_membership_through_the_inventory_lookup() -> None:
    inventory = {"10.9.9.9": {"safety-plc", "plc-7"}}
    obs, alerts = observer(asset_tags=lambda ip: inventory.get(ip, set()))
    obs.handle(tx(1.0, fc=3, server="10.9.9.9"))
    obs.flush(2.0)
    assert alerts[0].rule == "policy:hmi->tagged:no_conduit"


def test_report_lists_unused_rules_and_traffic_without_conduit() -> None:
    obs, _ = observer()
    obs.handle(tx(1.0, fc=3, client="10.0.1.5", server="10.0.0.5"))  # reverse direction
    report = obs.report()
    assert report["unused_rules"] == [{"conduit": "hmi-to-plc", "index": 0, "protocol": "modbus"}]
    assert report["no_conduit"] == [{"src_zone": "plc", "dest_zone": "hmi", "count": 1}]


def test_reload_swaps_a_valid_policy_and_keeps_the_old_one_on_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    obs, alerts = observer()
    watcher = PolicyWatcher(obs, path, interval=0.01)
    assert watcher.check_now() is False  # unchanged

    path.write_text(POLICY + "      - protocol: modbus\n        functions: [write_single_register]\n")
    os.utime(path, ns=(1, 10**18))
    assert watcher.check_now() is True
    obs.handle(tx(1.0, fc=6))
    obs.flush(2.0)
    assert alerts == []  # FC6 now allowed

    path.write_text("version: 1\nzones:\n  - id: x\n    members: [not-an-address]\n")
    os.utime(path, ns=(1, 2 * 10**18))
    assert watcher.check_now() is False
    assert watcher.failures == 1 and f"{path}:4:" in watcher.last_error
    obs.handle(tx(3.0, fc=6))
    obs.handle(tx(3.0, fc=5))
    obs.flush(4.0)
    assert [a.rule for a in alerts] == ["policy:hmi-to-plc:function_not_allowed"]  # old policy kept: FC6 ok

    path.unlink()
    assert watcher.check_now() is False  # a vanished file keeps the policy too


def test_the_watcher_judges_a_file_only_once_it_stopped_changing(tmp_path: Path) -> None:
    """A look that catches the file half-written (truncated, part of it written) must not refuse it: the
    watcher loads a changed file once one more look finds it unchanged."""
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    obs, _ = observer()
    watcher = PolicyWatcher(obs, path, interval=0.01)
    new = POLICY + "      - protocol: modbus\n        functions: [write_single_register]\n"
    path.write_text(new[: len(new) // 2])  # the writer is halfway
    os.utime(path, ns=(1, 10**18))
    assert watcher.poll() is False and watcher.failures == 0  # changed since the last look: wait
    path.write_text(new)
    os.utime(path, ns=(1, 2 * 10**18))
    assert watcher.poll() is False and watcher.failures == 0  # changed again: wait
    assert watcher.poll() is True and (watcher.reloads, watcher.failures) == (1, 0)
    assert watcher.poll() is False  # loaded: nothing new


def test_watcher_thread_starts_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    obs, _ = observer()
    watcher = PolicyWatcher(obs, path, interval=0.01).start()
    watcher.stop()
    assert watcher._thread is None


# The plc zone has no conduit to the hmi zone: everything a PLC opens towards an HMI is a violation.
PLC, HMI = "10.0.1.5", "10.0.0.5"


def publish(ts: float, client: str = PLC, server: str = HMI) -> MqttPacket:
    message = Publish("plant/line1/status", 0, False, False, 0, 2, "ok", {}, 0)
    flow = FlowRef(2, "1:y", "tcp", client, 40001, server, 1883)
    return MqttPacket(ts, flow, True, mqtt_codes.PUBLISH, 4, "plc-gw", message)


def test_one_no_conduit_alert_lists_every_protocol_the_two_hosts_spoke() -> None:
    obs, alerts = observer()
    obs.handle(tx(1.0, fc=3, client=PLC, server=HMI))  # Modbus/TCP 502
    obs.handle(publish(2.0))  # MQTT 1883
    obs.handle(tx(3.0, fc=3, client=PLC, server=HMI))
    obs.handle(publish(4.0))
    obs.flush(10.0)
    [alert] = alerts  # aggregated per (rule, client, server), as before
    assert (alert.rule, alert.count, alert.ts, alert.last_ts) == ("policy:plc->hmi:no_conduit", 4, 1.0, 4.0)
    assert alert.evidence["protocols"] == ["modbus", "mqtt"]  # first seen first, each once
    assert alert.evidence["edges"] == [
        {"protocol": "modbus", "port": 502},
        {"protocol": "mqtt", "port": 1883},
    ]
    # the record itself still names the first operation's communication
    assert alert.app_proto == "modbus" and alert.flow is not None and alert.flow.server_port == 502
    assert alert.evidence["protocol"] == "modbus" and alert.signature.endswith("; also mqtt/1883")

    alone, alone_alerts = observer()
    alone.handle(tx(1.0, fc=3, client=PLC, server=HMI))
    alone.handle(tx(3.0, fc=3, client=PLC, server=HMI))
    alone.flush(10.0)
    [single] = alone_alerts
    assert not {"protocols", "edges", "edges_truncated"} & single.evidence.keys()
    assert "also" not in single.signature
    assert single.alert_id == alert.alert_id  # what else was counted does not change the id


def test_the_communications_an_alert_lists_are_bounded() -> None:
    obs, alerts = observer()
    for port in range(1, 41):  # a port scan: flows of no known protocol, named by their transport
        flow = FlowRef(100 + port, "1:z", "tcp", PLC, 40000, HMI, port)
        obs.handle(FlowSummary(flow, float(port), float(port), 1, 1, 60, 60, "closed", "rst"))
    obs.flush(100.0)
    [alert] = alerts
    assert alert.count == 40 and alert.evidence["protocols"] == ["tcp"]
    assert alert.evidence["edges"] == [{"protocol": "tcp", "port": port} for port in range(1, 17)]
    assert alert.evidence["edges_truncated"] is True and alert.signature.endswith("tcp/16, ...")


def test_last_seen_never_goes_back_when_files_are_out_of_time_order() -> None:
    obs, alerts = observer()
    obs.handle(tx(100.0, fc=6))
    obs.handle(tx(50.0, fc=6))  # an older capture replayed after a newer one
    obs.flush(200.0)
    assert (alerts[0].ts, alerts[0].last_ts, alerts[0].count) == (100.0, 100.0, 2)


S7_POLICY = (
    POLICY
    + """\
      - protocol: s7comm_plus
        transport: tcp
        ports: [102]
"""
)


def s7_flow(flow_id: int, end: float) -> FlowSummary:
    flow = FlowRef(flow_id, "1:s7", "tcp", "10.0.0.5", 40000 + flow_id, "10.0.1.5", 102)
    return FlowSummary(flow, end - 1.0, end, 3, 3, 180, 180, "closed", "fin")


def test_an_unclaimed_flow_waits_for_its_name_before_it_is_judged() -> None:
    """Live --deep: tshark names a flow behind the sensor. A flow that ended before its name came waits
    ``wait_for_names`` seconds of packet time; named in that time, it is judged as its protocol."""
    names: dict[int, str] = {}
    obs, alerts = observer(S7_POLICY)
    obs.flow_protocol = lambda flow: names.get(flow.flow_id)
    obs.wait_for_names = 30.0
    obs.handle(s7_flow(1, 100.0))  # ended, not named yet
    obs.handle(s7_flow(2, 101.0))  # ended, never named
    obs.handle(tx(120.0))  # packet time moves on, still within the wait
    assert obs.violations == 0
    names[1] = "s7comm_plus"  # tshark's line arrives
    obs.handle(tx(130.5))  # flow 1's wait is over (100 + 30): judged as S7comm-plus, allowed
    assert (obs.operations, obs.violations) == (3, 0)
    obs.flush(131.5)  # flow 2's too: no name, judged as unknown tcp/102
    assert (obs.operations, obs.violations) == (4, 1)
    [alert] = alerts
    assert alert.rule == "policy:hmi-to-plc:protocol_not_allowed"
    assert alert.flow is not None and alert.flow.flow_id == 2


def test_without_a_wait_or_at_the_end_a_flow_is_judged_with_the_name_known_then() -> None:
    obs, _alerts = observer(S7_POLICY)
    obs.flow_protocol = lambda flow: None
    obs.handle(s7_flow(1, 100.0))  # no wait asked (replay): judged at once
    assert obs.violations == 1
    obs.wait_for_names = 30.0
    obs.handle(s7_flow(2, 101.0))
    assert obs.violations == 1
    obs.judge_waiting_flows()  # end of input: no name can come any more
    assert obs.violations == 2


def test_flows_waiting_for_a_name_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy.observer, "MAX_WAITING_FLOWS", 3)
    obs, _alerts = observer(S7_POLICY)
    obs.flow_protocol = lambda flow: None
    obs.wait_for_names = 1000.0
    for flow_id in range(1, 6):
        obs.handle(s7_flow(flow_id, 100.0 + flow_id))
    assert len(obs._waiting) == 3 and obs.violations == 2  # the two oldest were judged to make room
