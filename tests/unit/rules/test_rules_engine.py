"""Engine semantics on zonewarden's own events (Suricata's documented meaning of each keyword)."""

from __future__ import annotations

from typing import Any

import pytest

from rules.engine import RuleSet, RulesObserver
from rules.parse import parse_rule
from sensor.dissectors.modbus import codes
from sensor.dissectors.modbus.events import ModbusRequest, ModbusTransaction
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish, Subscribe, Subscription
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.records import Alert, FlowRef, ProtocolAnomaly

FLOW = FlowRef(1, "1:x", "tcp", "10.0.0.5", 40000, "192.168.1.20", 502)


def modbus(fc: int, unit: int = 1, **req: Any) -> ModbusTransaction:
    sub = req.get("subfunction")
    return ModbusTransaction(
        ts=100.0,
        flow=FLOW,
        transaction_id=1,
        unit_id=unit,
        function=fc,
        function_name=codes.function_name(fc),
        category=codes.category(fc),
        code_class=codes.code_class(fc, sub),
        status="ok",
        request=ModbusRequest(fc, **req),
    )


def mqtt(message: Any, ptype: int, version: int = 4, ts: float = 100.0, to_server: bool = True) -> MqttPacket:
    flow = FlowRef(2, "1:y", "tcp", "10.0.0.6", 40001, "10.0.0.7", 1883)
    return MqttPacket(
        ts=ts, flow=flow, to_server=to_server, packet_type=ptype, protocol_version=version, message=message
    )


def publish(topic: str, payload: str = "", qos: int = 0, retain: bool = False) -> MqttPacket:
    return mqtt(Publish(topic, qos, retain, False, 1 if qos else 0, len(payload), payload, {}, 0), 3)


def fires(options: str, event: Any, proto: str = "modbus", header: str = "any any -> any any") -> bool:
    alerts: list[Alert] = []
    rs = RuleSet.compile([parse_rule(f'alert {proto} {header} (msg:"t"; {options} sid:1;)')])
    assert rs.rejected == [], rs.rejected
    RulesObserver(alerts.append, rs).handle(event)
    return bool(alerts)


# --- modbus -----------------------------------------------------------------------------------------


def test_modbus_address_in_rules_starts_at_1() -> None:
    tx = modbus(6, address=499, quantity=1, values=(300,))  # PDU address 499 = rule address 500
    assert fires("modbus: access write holding, address 500, value >200;", tx)
    assert not fires("modbus: access write holding, address 499;", tx)
    assert not fires("modbus: access write holding, address 500, value >300;", tx)  # strict


def test_modbus_address_ranges_are_strict_and_cover_the_quantity() -> None:
    tx = modbus(3, address=0, quantity=10)  # rule addresses 1..10
    assert fires("modbus: access read holding, address <2;", tx)
    assert not fires("modbus: access read holding, address <1;", tx)
    assert fires("modbus: access read holding, address >9;", tx)
    assert not fires("modbus: access read holding, address >10;", tx)
    assert fires("modbus: access read holding, address 9<>11;", tx)  # 10 only
    assert not fires("modbus: access read holding, address 10<>11;", tx)
    assert not fires("modbus: access read input;", tx)
    assert not fires("modbus: access write;", tx)


def test_modbus_function_classes_negation_subfunction_and_unit() -> None:
    assert fires("modbus: function 8, subfunction 4;", modbus(8, subfunction=4))
    assert not fires("modbus: function 8, subfunction 4;", modbus(8, subfunction=1))
    assert fires("modbus: function reserved;", modbus(90))
    assert fires("modbus: function !reserved;", modbus(3))
    assert not fires("modbus: function !reserved;", modbus(125))
    assert fires("modbus: function user;", modbus(66))
    assert fires("modbus: function assigned;", modbus(16))
    assert fires("modbus: function unassigned;", modbus(50))
    assert fires("modbus: unit 10<>20, function 3;", modbus(3, unit=15, address=0, quantity=1))
    assert not fires("modbus: unit 10<>20, function 3;", modbus(3, unit=20, address=0, quantity=1))


def test_modbus_fc23_write_part_and_coil_values() -> None:
    tx = modbus(23, address=0, quantity=2, write_address=29, write_quantity=2, write_values=(7, 8))
    assert fires("modbus: access write holding, address 31, value 8;", tx)  # PDU 30 -> value 8
    assert not fires("modbus: access write holding, address 31, value 7;", tx)
    coil = modbus(5, address=3, quantity=1, values=(True,))
    assert fires("modbus: access write coils, address 4, value 1;", coil)


def test_modbus_needs_a_request() -> None:
    tx = ModbusTransaction(
        100.0, FLOW, 1, 1, 3, "read_holding_registers", "read", "public_assigned", "unsolicited"
    )
    assert not fires("modbus: function 3;", tx)


@pytest.mark.parametrize(
    "value",
    [
        "function 3, access read",
        "access write input",
        "access read, address 3",
        "subfunction 4",
        "function 300",
        "frob 1",
    ],
)
def test_modbus_invalid_settings_are_rejected(value: str) -> None:
    rs = RuleSet.compile([parse_rule(f"alert modbus any any -> any any (modbus: {value}; sid:1;)")])
    assert rs.rules == [] and rs.rejected[0].status == "invalid"


# --- header ---------------------------------------------------------------------------------------------


def test_header_variables_negation_ports_and_direction() -> None:
    tx = modbus(3, address=0, quantity=1)  # 10.0.0.5:40000 -> 192.168.1.20:502
    assert fires("", tx, header="$HOME_NET any -> $HOME_NET $MODBUS_PORTS")
    assert not fires("", tx, header="$EXTERNAL_NET any -> any any")
    assert fires("", tx, header="[10.0.0.0/8,!10.0.0.6] 1024: -> 192.168.1.0/24 [500:510,!501]")
    assert not fires("", tx, header="[10.0.0.0/8,!10.0.0.5] any -> any any")
    assert not fires("", tx, header="192.168.1.20 502 -> 10.0.0.5 any")
    assert fires("", tx, header="192.168.1.20 502 <> 10.0.0.5 any")
    assert not fires("", tx, header="any any -> any !502")


# --- mqtt -----------------------------------------------------------------------------------------------


def test_mqtt_integers_flags_and_sticky_buffers() -> None:
    ev = publish("plant/line1/cmd", "valve=open", qos=1, retain=True)
    assert fires("mqtt.type:PUBLISH; mqtt.qos:1; mqtt.flags:retain,!dup;", ev, "mqtt")
    assert not fires("mqtt.qos:0-1;", ev, "mqtt")  # ranges are exclusive
    assert fires("mqtt.qos:!0-1;", ev, "mqtt")
    assert fires(
        'mqtt.publish.topic; content:"LINE1"; nocase; content:"cmd"; distance:1; within:4;', ev, "mqtt"
    )
    assert not fires('mqtt.publish.topic; content:"line1"; depth:5;', ev, "mqtt")
    assert fires('mqtt.publish.topic; content:"line1"; offset:6; depth:5;', ev, "mqtt")
    assert fires('mqtt.publish.message; content:"open"; endswith;', ev, "mqtt")
    assert fires('mqtt.publish.message; content:!"close";', ev, "mqtt")
    assert fires('mqtt.publish.message; pcre:"/^VALVE=/i"; bsize:10;', ev, "mqtt")
    assert not fires("mqtt.publish.message; bsize:>10;", ev, "mqtt")


def test_mqtt_subscribe_topic_is_a_multi_buffer_and_connect_flags() -> None:
    sub = mqtt(
        Subscribe(1, (Subscription("a/b", 0, False, False, 0), Subscription("#", 1, False, False, 0)), {}), 8
    )
    assert fires('mqtt.subscribe.topic; content:"#"; startswith; endswith;', sub, "mqtt")
    assert fires("mqtt.qos:1;", sub, "mqtt")  # SUBSCRIBE fixed-header flags 0b0010
    con = mqtt(Connect("MQTT", 4, True, 30, "mosq-1", "bob", True, None, None, {}), 1)
    assert fires(
        'mqtt.connect.flags:username,password,!will; mqtt.connect.clientid; pcre:"/^mosq/";', con, "mqtt"
    )
    assert not fires("mqtt.connect.flags:will;", con, "mqtt")


def test_flow_direction() -> None:
    ev = publish("a")
    assert fires("flow:established,to_server;", ev, "mqtt")
    assert not fires("flow:to_client;", ev, "mqtt")


# --- opcua -----------------------------------------------------------------------------------------------


def ua(
    service: str, request: dict[str, Any] | None = None, mode: str = "None", status: str = "Good"
) -> OpcUaMessage:
    return OpcUaMessage(
        100.0,
        FLOW,
        True,
        "MSG",
        1,
        1,
        service,
        None,
        None,
        1,
        status,
        "http://opcfoundation.org/UA/SecurityPolicy#Basic256",
        mode,
        request,
        None,
        (),
    )


def test_opcua_keywords() -> None:
    ev = ua("Write", {"nodes_to_write": [{"node_id": "ns=2;s=Valve", "attribute": "Value"}]}, mode="Sign")
    assert fires("opcua.service:Read,Write; opcua.security_mode:!SignAndEncrypt;", ev, "opcua")
    assert fires('opcua.nodeid; content:"s=Valve"; endswith;', ev, "opcua")
    assert fires("opcua.security_policy:basic256;", ev, "opcua")
    assert fires('opcua.security_policy; content:"#Basic256"; endswith;', ev, "opcua")
    assert not fires("opcua.status_code:BadUserAccessDenied;", ev, "opcua")
    assert not fires("opcua.service:Read;", ev, "opcua")


# --- unsupported, thresholds, pass, anomalies ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ('alert http any any -> any any (content:"x"; sid:1;)', "unsupported"),
        ('alert tcp any any -> any 502 (content:"x"; sid:1;)', "unsupported"),
        ("alert tcp any any -> any any (flags:S; sid:1;)", "unsupported"),
        ("alert modbus any any -> any any (modbus: function 3; flowbits:set,x; sid:1;)", "unsupported"),
        ('alert mqtt any any -> any any (mqtt.publish.topic; pcre:"/x/U"; sid:1;)', "unsupported"),
        ("alert modbus any any -> any any (classtype:no-such-class; sid:1;)", "invalid"),
        ("alert modbus $NO_SUCH_VAR any -> any any (sid:1;)", "invalid"),
        ("alert modbus any any -> any any (modbus: function 3; mqtt.qos:1; sid:1;)", "invalid"),
    ],
)
def test_unsupported_and_invalid_rules_are_reported_never_loaded(text: str, status: str) -> None:
    rs = RuleSet.compile([parse_rule(text)])
    assert rs.rules == []
    assert rs.rejected[0].status == status
    assert rs.counts()[status] == 1


def test_tcp_header_with_modbus_keyword_is_a_modbus_rule() -> None:
    rs = RuleSet.compile([parse_rule("alert tcp any any -> any 502 (modbus: function 8; sid:1;)")])
    assert rs.rules[0].app_proto == "modbus"


def _run(options: str, times: list[float]) -> int:
    alerts: list[Alert] = []
    rs = RuleSet.compile([parse_rule(f"alert mqtt any any -> any any ({options} sid:1;)")])
    obs = RulesObserver(alerts.append, rs)
    for t in times:
        obs.handle(mqtt(None, 12, ts=t))
    return len(alerts)


def test_thresholds_in_packet_time() -> None:
    ten = [100.0 + i for i in range(10)]
    assert _run("threshold: type limit, track by_src, count 2, seconds 60;", ten) == 2
    assert _run("threshold: type threshold, track by_src, count 3, seconds 60;", ten) == 3
    assert _run("threshold: type both, track by_src, count 3, seconds 60;", ten) == 1
    assert _run("detection_filter: track by_src, count 7, seconds 60;", ten) == 3
    assert _run("detection_filter: track by_src, count 2, seconds 1;", ten) == 0  # window slides away
    assert _run("threshold: type backoff, track by_flow, count 1, multiplier 2;", ten) == 4  # 1, 2, 4, 8


def test_pass_rule_silences_the_event() -> None:
    alerts: list[Alert] = []
    rs = RuleSet.compile(
        [
            parse_rule('alert mqtt any any -> any any (msg:"a"; mqtt.type:PUBLISH; sid:1;)'),
            parse_rule('pass mqtt 10.0.0.6 any -> any any (msg:"p"; mqtt.type:PUBLISH; sid:2;)'),
        ]
    )
    RulesObserver(alerts.append, rs).handle(publish("x"))
    assert alerts == []


def test_app_layer_event_matches_protocol_anomalies() -> None:
    alerts: list[Alert] = []
    rs = RuleSet.compile(
        [parse_rule("alert modbus any any -> any any (app-layer-event:modbus.invalid_length; sid:3;)")]
    )
    obs = RulesObserver(alerts.append, rs)
    obs.handle(ProtocolAnomaly(1.0, FLOW, "modbus.invalid_length", app_proto="modbus"))
    obs.handle(ProtocolAnomaly(1.0, FLOW, "modbus.invalid_function_code", app_proto="modbus"))
    assert [a.signature_id for a in alerts] == [3]


def test_alert_fields() -> None:
    alerts: list[Alert] = []
    rs = RuleSet.compile(
        [
            parse_rule(
                'alert modbus any any -> any any (msg:"m"; modbus: function 90; classtype:attempted-admin; '
                "metadata:mitre_technique_id T0843, created_at 2025_01_01; sid:9100004; rev:2;)"
            )
        ]
    )
    RulesObserver(alerts.append, rs).handle(modbus(90))
    (a,) = alerts
    assert (a.rule, a.signature, a.category, a.severity, a.signature_id, a.rev) == (
        "1:9100004:2",
        "m",
        "signature",
        1,
        9100004,
        2,
    )
    assert a.mitre == ("T0843",) and a.evidence["classtype"] == "attempted-admin"
    assert a.evidence["event"]["function"] == 90
