"""Table-driven evaluation: one operation, one policy, the expected verdict (reason, conduit, zones)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from policy.evaluate import (
    Verdict,
    evaluate_flow,
    evaluate_modbus,
    evaluate_mqtt,
    evaluate_opcua_channel,
    evaluate_opcua_message,
)
from policy.index import CompiledPolicy, filter_covers, split_filter, topic_matches
from policy.load import parse_policy
from sensor.dissectors.modbus import codes
from sensor.dissectors.modbus.events import ModbusRequest, ModbusTransaction
from sensor.dissectors.mqtt import codes as mqtt_codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish, Subscribe, Subscription, Will
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage
from sensor.records import FlowRef, FlowSummary

POLICY = """\
version: 1
default: deny
zones:
  - id: scada
    members: [10.10.2.0/24]
  - id: control
    security_level: {target: 3}
    members: [10.10.1.0/24, "aa:bb:cc:00:00:01"]
  - id: dmz
    members: ["10.10.3.10-10.10.3.20", {tag: historian}]
  - id: engineering
    members: [10.10.2.50]          # more specific than scada's /24
    intra_zone: deny
conduits:
  - id: scada-to-control
    from: scada
    to: control
    allow:
      - protocol: modbus
        functions: [read_holding_registers, read_input_registers]
        units: [1, 2]
        addresses: {holding_registers: "0-999"}
      - protocol: modbus
        functions: [write_single_register, 16]
        units: [1]
        addresses: {holding_registers: "100-109"}
        values: {holding_registers: "0-500"}
      - protocol: opcua
        services: [Read, Browse, Write]
        nodes: ["ns=2;i=3"]
        namespaces: [3]
        min_security_mode: Sign
        security_policies: [Basic256Sha256]
        user_token_types: [UserName]
      - protocol: dnp3
        transport: tcp
        ports: [20000]
  - id: control-to-dmz
    from: control
    to: dmz
    allow:
      - protocol: mqtt
        publish: ["plant/+/telemetry/#"]
        subscribe: ["plant/+/cmd"]
        qos: [0, 1]
        retain: false
        client_ids: ["plc-*", "gw-1"]
      - protocol: mqtt
        publish: ["secure/#"]
        client_ids: ["secure-*"]
        require_tls: true
"""

COMPILED = CompiledPolicy(
    parse_policy(POLICY), asset_tags=lambda ip: {"historian"} if ip == "10.10.9.9" else set()
)


def flow(client: str, server: str, port: int = 502, transport: str = "tcp", server_mac: str = "") -> FlowRef:
    return FlowRef(1, "1:x", transport, client, 40000, server, port, "", server_mac)


def modbus(
    client: str = "10.10.2.5",
    server: str = "10.10.1.7",
    fc: int = 3,
    unit: int = 1,
    address: int | None = 0,
    quantity: int | None = 10,
    values: tuple[int, ...] = (),
    port: int = 502,
    server_mac: str = "",
) -> ModbusTransaction:
    return ModbusTransaction(
        ts=100.0,
        flow=flow(client, server, port, server_mac=server_mac),
        transaction_id=1,
        unit_id=unit,
        function=fc,
        function_name=codes.function_name(fc),
        category=codes.category(fc),
        code_class=codes.code_class(fc),
        status="ok",
        request=ModbusRequest(function=fc, address=address, quantity=quantity, values=values),
    )


def one(verdicts: list[Verdict]) -> Verdict:
    assert len(verdicts) == 1
    return verdicts[0]


MODBUS_CASES = [
    # (kwargs, allowed, reason, rule)
    ({}, True, "", ""),
    ({"fc": 4, "unit": 2, "address": 5000}, True, "", ""),  # input registers not restricted
    ({"address": 995, "quantity": 5}, True, "", ""),
    (
        {"address": 995, "quantity": 6},
        False,
        "address_out_of_range",
        "policy:scada-to-control:address_out_of_range",
    ),
    ({"unit": 3}, False, "unit_not_allowed", "policy:scada-to-control:unit_not_allowed"),
    ({"fc": 5, "address": 1, "quantity": 1, "values": (1,)}, False, "function_not_allowed", ""),
    ({"fc": 6, "address": 105, "quantity": 1, "values": (500,)}, True, "", ""),
    ({"fc": 6, "address": 105, "quantity": 1, "values": (501,)}, False, "value_out_of_range", ""),
    ({"fc": 6, "address": 110, "quantity": 1, "values": (1,)}, False, "address_out_of_range", ""),
    ({"fc": 6, "unit": 2, "address": 105, "quantity": 1, "values": (1,)}, False, "unit_not_allowed", ""),
    ({"fc": 16, "address": 100, "quantity": 3, "values": (1, 2, 600)}, False, "value_out_of_range", ""),
    ({"fc": 90, "address": None, "quantity": None}, False, "function_not_allowed", ""),
    ({"port": 5020}, False, "port_not_allowed", ""),
    ({"client": "10.10.1.7", "server": "10.10.2.5"}, False, "no_conduit", "policy:control->scada:no_conduit"),
    ({"client": "10.10.2.50"}, False, "no_conduit", "policy:engineering->control:no_conduit"),
    ({"client": "192.0.2.1"}, False, "no_conduit", "policy:unzoned->control:no_conduit"),
    ({"server": "10.10.2.6"}, True, "", ""),  # inside scada: intra-zone allowed
    (
        {"client": "10.10.2.50", "server": "10.10.2.50"},
        False,
        "no_conduit",
        "policy:engineering->engineering:no_conduit",
    ),
    ({"server": "10.10.3.15"}, False, "no_conduit", "policy:scada->dmz:no_conduit"),  # IP range member
]


@pytest.mark.parametrize(("kwargs", "allowed", "reason", "rule"), MODBUS_CASES)
def test_modbus(kwargs: dict[str, Any], allowed: bool, reason: str, rule: str) -> None:
    v = one(evaluate_modbus(COMPILED, modbus(**kwargs)))
    assert (v.allowed, v.reason) == (allowed, reason), v.detail
    if rule:
        assert v.rule == rule
    if not allowed:
        assert v.evidence is not None
        assert v.evidence["operation"]["function"] == kwargs.get("fc", 3)
        assert v.evidence["src_zone"] == v.src_zone and v.evidence["conduit"] == v.conduit


def test_modbus_write_severity_and_mitre() -> None:
    v = one(evaluate_modbus(COMPILED, modbus(fc=6, address=105, quantity=1, values=(900,))))
    assert (v.severity, v.mitre) == (1, ("T0836",))
    v = one(evaluate_modbus(COMPILED, modbus(fc=90, address=None, quantity=None)))
    assert v.mitre == ("T0843",)


def test_zone_by_mac_and_by_asset_tag() -> None:
    # a MAC member wins over the address: 192.0.2.99 is in control through its MAC
    tx = modbus(server="192.0.2.99", server_mac="AA:BB:CC:00:00:01")
    assert one(evaluate_modbus(COMPILED, tx)).allowed
    # a tag member, through the inventory's lookup
    v = one(evaluate_modbus(COMPILED, modbus(client="10.10.1.7", server="10.10.9.9")))
    assert v.rule == "policy:control-to-dmz:protocol_not_allowed"


def opcua(
    service: str, mode: str = "Sign", request: dict[str, Any] | None = None, policy: str = "Basic256Sha256"
) -> OpcUaMessage:
    return OpcUaMessage(
        ts=1.0,
        flow=flow("10.10.2.5", "10.10.1.7", 4840),
        to_server=True,
        message_type="MSG",
        secure_channel_id=1,
        request_id=1,
        service=service,
        request_type_id=None,
        response_type_id=None,
        request_handle=1,
        status="Good",
        security_policy="http://opcfoundation.org/UA/SecurityPolicy#" + policy,
        security_mode=mode,
        request=request,
        response=None,
        chunks=(),
    )


OPCUA_CASES = [
    (opcua("Read"), True, ""),
    (opcua("CreateSession"), True, ""),  # implied
    (opcua("Read", mode="None"), False, "security_mode_too_low"),
    (opcua("Read", policy="Basic128Rsa15"), False, "policy_not_allowed"),
    (opcua("Call"), False, "service_not_allowed"),
    (opcua("Write", request={"nodes_to_write": [{"node_id": "ns=2;i=3"}]}), True, ""),
    (opcua("Write", request={"nodes_to_write": [{"node_id": "ns=3;s=Valve"}]}), True, ""),
    (opcua("Write", request={"nodes_to_write": [{"node_id": "ns=2;i=4"}]}), False, "node_not_allowed"),
    (opcua("ActivateSession", request={"user_identity_token": {"token_type": "UserName"}}), True, ""),
    (
        opcua("ActivateSession", request={"user_identity_token": {"token_type": "Anonymous"}}),
        False,
        "token_type_not_allowed",
    ),
]


@pytest.mark.parametrize(("msg", "allowed", "reason"), OPCUA_CASES)
def test_opcua(msg: OpcUaMessage, allowed: bool, reason: str) -> None:
    v = one(evaluate_opcua_message(COMPILED, msg))
    assert (v.allowed, v.reason) == (allowed, reason), v.detail


def test_opcua_responses_are_not_operations() -> None:
    msg = opcua("Read")
    lone_response = dataclasses.replace(msg, to_server=False)
    assert evaluate_opcua_message(COMPILED, lone_response) == []


def test_opcua_channel_mode() -> None:
    ev = OpcUaChannelEvent(1.0, flow("10.10.2.5", "10.10.1.7", 4840), "mode", 1, "x#None", "None", "opn")
    assert one(evaluate_opcua_channel(COMPILED, ev)).reason == "security_mode_too_low"
    ok = OpcUaChannelEvent(
        1.0,
        flow("10.10.2.5", "10.10.1.7", 4840),
        "mode",
        1,
        "x#Basic256Sha256",
        "SignAndEncrypt",
        "encrypted",
    )
    assert one(evaluate_opcua_channel(COMPILED, ok)).allowed


def mqtt(message: Any, ptype: int, client_id: str = "plc-7", port: int = 1883) -> MqttPacket:
    return MqttPacket(1.0, flow("10.10.1.7", "10.10.3.12", port), True, ptype, 4, client_id, message)


def pub(topic: str, qos: int = 0, retain: bool = False) -> Publish:
    return Publish(topic, qos, retain, False, 1, 3, "abc", {}, 0)


MQTT_CASES = [
    (mqtt(pub("plant/line1/telemetry/temp"), mqtt_codes.PUBLISH), [(True, "")]),
    (mqtt(pub("plant/line1/telemetry"), mqtt_codes.PUBLISH), [(True, "")]),  # '#' matches the parent
    (mqtt(pub("plant/line1/alarm"), mqtt_codes.PUBLISH), [(False, "topic_not_allowed")]),
    (mqtt(pub("plant/line1/telemetry/x", qos=2), mqtt_codes.PUBLISH), [(False, "qos_not_allowed")]),
    (mqtt(pub("plant/line1/telemetry/x", retain=True), mqtt_codes.PUBLISH), [(False, "retain_not_allowed")]),
    (
        mqtt(pub("plant/a/telemetry/x"), mqtt_codes.PUBLISH, client_id="intruder"),
        [(False, "client_not_allowed")],
    ),
    (mqtt(pub("plant/a/telemetry/x"), mqtt_codes.PUBLISH, client_id="gw-1"), [(True, "")]),
    (mqtt(pub("secure/x"), mqtt_codes.PUBLISH, client_id="secure-1"), [(False, "tls_required")]),
    (mqtt(pub("secure/x"), mqtt_codes.PUBLISH), [(False, "topic_not_allowed")]),
    (
        mqtt(
            Subscribe(
                1,
                (
                    Subscription("plant/line2/cmd", 1, False, False, 0),
                    Subscription("plant/#", 0, False, False, 0),
                ),
                {},
            ),
            mqtt_codes.SUBSCRIBE,
        ),
        [(True, ""), (False, "topic_not_allowed")],
    ),
    (
        mqtt(
            Connect(
                "MQTT",
                4,
                True,
                60,
                "plc-7",
                None,
                False,
                None,
                Will("plant/l1/status", 1, True, 0, "", {}),
                {},
            ),
            mqtt_codes.CONNECT,
        ),
        [(True, ""), (False, "topic_not_allowed")],
    ),
    (mqtt(pub("plant/line1/telemetry/temp"), mqtt_codes.PUBLISH, port=1884), [(False, "port_not_allowed")]),
]


@pytest.mark.parametrize(("pkt", "expected"), MQTT_CASES)
def test_mqtt(pkt: MqttPacket, expected: list[tuple[bool, str]]) -> None:
    assert [(v.allowed, v.reason) for v in evaluate_mqtt(COMPILED, pkt)] == expected


def test_mqtt_deliveries_from_the_broker_are_not_operations() -> None:
    pkt = MqttPacket(
        1.0, flow("10.10.1.7", "10.10.3.12", 1883), False, mqtt_codes.PUBLISH, 4, "plc-7", pub("x/y")
    )
    assert evaluate_mqtt(COMPILED, pkt) == []


def summary(client: str, server: str, port: int, app_proto: str = "", transport: str = "tcp") -> FlowSummary:
    return FlowSummary(
        flow(client, server, port, transport), 0.0, 1.0, 3, 3, 100, 100, "closed", "fin", app_proto
    )


FLOW_CASES = [
    (summary("10.10.2.5", "10.10.1.7", 20000), "dnp3", True, ""),
    (summary("10.10.2.5", "10.10.1.7", 20001), "dnp3", False, "port_not_allowed"),
    (summary("10.10.2.5", "10.10.1.7", 102), "s7comm", False, "protocol_not_allowed"),
    (summary("10.10.2.5", "10.10.1.7", 502), None, True, ""),  # bare connection to a Modbus port
    (summary("10.10.2.5", "10.10.1.7", 502, "modbus"), None, True, ""),
    (summary("10.10.2.5", "10.10.1.7", 443, "tls"), None, False, "protocol_not_allowed"),
    (summary("10.10.1.7", "10.10.3.12", 8883, "tls"), None, True, ""),  # MQTT over TLS port
    (summary("10.10.1.7", "10.10.2.5", 502), None, False, "no_conduit"),
]


@pytest.mark.parametrize(("fs", "name", "allowed", "reason"), FLOW_CASES)
def test_flows(fs: FlowSummary, name: str | None, allowed: bool, reason: str) -> None:
    v = one(evaluate_flow(COMPILED, fs, name))
    assert (v.allowed, v.reason) == (allowed, reason), v.detail


def test_default_allow_still_enforces_conduits() -> None:
    text = POLICY.replace("default: deny", "default: allow")
    compiled = CompiledPolicy(parse_policy(text))
    assert one(evaluate_modbus(compiled, modbus(client="10.10.1.7", server="10.10.2.5"))).allowed
    assert one(evaluate_modbus(compiled, modbus(unit=9))).reason == "unit_not_allowed"
    assert (
        one(evaluate_modbus(compiled, modbus(client="10.10.2.50", server="10.10.2.50"))).reason
        == "no_conduit"
    )


@pytest.mark.parametrize(
    ("allowed", "requested", "covers"),
    [
        ("plant/#", "plant/+/x", True),
        ("plant/#", "plant", True),
        ("plant/+", "plant/#", False),
        ("plant/+/cmd", "plant/a/cmd", True),
        ("plant/+/cmd", "plant/+/cmd", True),
        ("plant/a/cmd", "plant/+/cmd", False),
        ("#", "$SYS/#", False),
        ("$SYS/#", "$SYS/broker/x", True),
    ],
)
def test_filter_covers(allowed: str, requested: str, covers: bool) -> None:
    assert filter_covers(split_filter(allowed), split_filter(requested)) is covers


def test_topic_matches() -> None:
    assert topic_matches(split_filter("a/+/c"), "a/b/c")
    assert not topic_matches(split_filter("a/+/c"), "a/b/c/d")
    assert not topic_matches(split_filter("+/x"), "$SYS/x")
    assert topic_matches(split_filter("a/#"), "a")
