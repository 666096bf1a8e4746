"""Builders of the dissector events the anomaly detectors judge (tests only)."""

from __future__ import annotations

import zlib
from typing import Any

from sensor.detect.observer import AnomalyObserver
from sensor.dissectors.modbus import codes
from sensor.dissectors.modbus.events import ModbusRequest, ModbusResponse, ModbusTransaction
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish, Subscribe, Subscription
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.records import Alert, FlowRef, FlowSummary, ProtocolAnomaly

T0 = 1_700_000_000.0
MASTER, PLC, ROGUE, BROKER = "10.0.0.1", "10.0.0.9", "10.0.0.66", "10.0.0.5"


def flow(client: str = MASTER, server: str = PLC, port: int = 502, cport: int = 40000) -> FlowRef:
    ident = zlib.crc32(f"{client}|{server}|{port}|{cport}".encode())
    return FlowRef(ident, "1:x", "tcp", client, cport, server, port)


def modbus(
    ts: float,
    fc: int = 3,
    address: int = 0,
    quantity: int = 10,
    values: tuple[int, ...] = (),
    unit: int = 1,
    client: str = MASTER,
    server: str = PLC,
    status: str = "ok",
    subfunction: int | None = None,
    read_values: tuple[int, ...] | None = None,
    exception_code: int | None = None,
) -> ModbusTransaction:
    write = codes.category(fc) == "write"
    req = ModbusRequest(
        fc,
        address=address,
        quantity=quantity,
        values=values if write else (),
        subfunction=subfunction,
    )
    resp = None
    if status == "ok":
        resp = ModbusResponse(
            fc, address=address, quantity=quantity, values=read_values if read_values is not None else ()
        )
    elif status == "exception":
        resp = ModbusResponse(fc, exception_code=exception_code or 2)
    return ModbusTransaction(
        ts=ts,
        flow=flow(client, server),
        transaction_id=1,
        unit_id=unit,
        function=fc,
        function_name=codes.function_name(fc),
        category=codes.category(fc),
        code_class=codes.code_class(fc),
        status=status,
        request=req,
        response=resp,
        exception_code=exception_code,
        request_ts=ts,
        response_ts=ts,
    )


def opcua(
    ts: float, service: str, request: dict[str, Any], client: str = MASTER, server: str = PLC
) -> OpcUaMessage:
    return OpcUaMessage(
        ts=ts,
        flow=flow(client, server, 4840),
        to_server=True,
        message_type="MSG",
        secure_channel_id=1,
        request_id=1,
        service=service,
        request_type_id=None,
        response_type_id=None,
        request_handle=1,
        status="Good",
        security_policy="http://opcfoundation.org/UA/SecurityPolicy#None",
        security_mode="None",
        request=request,
        response={},
        chunks=(),
    )


def mqtt_publish(
    ts: float,
    topic: str,
    client_id: str,
    payload: str = "1",
    retain: bool = False,
    qos: int = 0,
    client: str = MASTER,
) -> MqttPacket:
    msg = Publish(topic, qos, retain, False, 1 if qos else 0, len(payload), payload, {}, 0)
    return MqttPacket(ts, flow(client, BROKER, 1883), True, 3, 4, client_id=client_id, message=msg)


def mqtt_subscribe(ts: float, topic_filter: str, client_id: str, client: str = MASTER) -> MqttPacket:
    msg = Subscribe(1, (Subscription(topic_filter, 0, False, False, 0),), {})
    return MqttPacket(ts, flow(client, BROKER, 1883), True, 8, 4, client_id=client_id, message=msg)


def mqtt_connect(ts: float, client_id: str, client: str = MASTER, cport: int = 40000) -> MqttPacket:
    msg = Connect("MQTT", 4, True, 30, client_id, None, False, None, None, {})
    return MqttPacket(ts, flow(client, BROKER, 1883, cport), True, 1, 4, client_id=client_id, message=msg)


def probe(ts: float, client: str, server: str, port: int) -> FlowSummary:
    return FlowSummary(flow(client, server, port), ts, ts + 0.001, 1, 1, 60, 54, "closed", "rst")


def anomaly(ts: float, kind: str) -> ProtocolAnomaly:
    return ProtocolAnomaly(ts, flow(), kind, "detail", True, 2, "modbus")


def observer(learn_for: float | None = 10.0) -> tuple[AnomalyObserver, list[Alert]]:
    alerts: list[Alert] = []
    return AnomalyObserver(alerts.append, learn_for=learn_for), alerts


def rules(alerts: list[Alert]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in alerts:
        out[a.rule] = out.get(a.rule, 0) + a.count
    return out


def learn_plant(obs: AnomalyObserver, seconds: float = 10.0, period: float = 0.5) -> float:
    """Normal traffic: FC3 polling of holding 0-9 (register 7 around 500), a setpoint write of
    register 20 (values 5..7) every 4 cycles; returns the packet time after the last event."""
    t = T0
    n = 0
    while t < T0 + seconds:
        noise = (n * 7) % 5 - 2
        obs.handle(modbus(t, 3, 0, 10, read_values=(0, 1, 2, 3, 4, 5, 6, 500 + noise, 8, 9)))
        if n % 4 == 0:
            obs.handle(modbus(t + 0.01, 16, 20, 1, values=(5 + n % 3,)))
        n += 1
        t += period
    return t
