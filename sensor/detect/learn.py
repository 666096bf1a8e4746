"""From events to what the baseline learns: facts, polled series and process values.

The same extraction serves learning and detection, so a detector judges exactly what learning
would have recorded. Per event the work is a few tuple builds and set lookups (no I/O, no regex).

Granularity (ANCHORS.md §1 item 8): Modbus at (client, server, unit) for function codes and per
table address intervals, written values per (server, unit, table, address), polling per
(client, server, unit, function, first address); OPC UA services, written nodes, called methods and
security mode/policy per (client, server); MQTT publishers, subscribers, QoS and retained
publishers per (broker, topic), client ids per host. Tables use the spec's names (MODBUS
Application Protocol v1.1b3 §4.3): coils, discrete_inputs, holding_registers, input_registers.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any, Final, NamedTuple

from sensor.detect.baseline import Baseline, Fact, RunningStats, ValueStats, is_special_address
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish, Subscribe
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.records import FlowRef, FlowSummary, ProtocolAnomaly

COILS: Final = "coils"
DISCRETE_INPUTS: Final = "discrete_inputs"
HOLDING: Final = "holding_registers"
INPUT: Final = "input_registers"

READ_TABLE: Final[dict[int, str]] = {1: COILS, 2: DISCRETE_INPUTS, 3: HOLDING, 4: INPUT, 23: HOLDING}
WRITE_TABLE: Final[dict[int, str]] = {5: COILS, 15: COILS, 6: HOLDING, 16: HOLDING, 22: HOLDING, 23: HOLDING}
REGISTER_TABLES: Final = frozenset({HOLDING, INPUT})
TABLE_WORDS: Final[dict[str, str]] = {
    COILS: "coils",
    DISCRETE_INPUTS: "discrete inputs",
    HOLDING: "holding registers",
    INPUT: "input registers",
}
NUMERIC_VARIANTS: Final = frozenset(
    {"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double"}
)
MAX_HANDLES: Final = 65536  # OPC UA (flow, client handle) -> node entries kept for Publish values
MIN_RATE_DT: Final = 1e-3  # seconds; two samples closer than this give no rate


class ModbusOp(NamedTuple):
    """One Modbus transaction reduced to what baselines and detectors use."""

    ts: float  # request time when known (polling intervals), else completion time
    client: str
    server: str
    unit: int
    function: int
    subfunction: int | None
    status: str
    exception_code: int | None
    reads: tuple[tuple[str, int, int], ...]  # (table, first, last)
    writes: tuple[tuple[str, int, int], ...]
    written: tuple[tuple[str, int, float], ...]  # (table, address, value)
    read_values: tuple[tuple[str, int, float], ...]  # registers only, from a valid response
    device_id: bool  # FC 43 / MEI 14 Read Device Identification


def modbus_op(tx: ModbusTransaction) -> ModbusOp | None:
    flow = tx.flow
    if flow is None:
        return None
    req = tx.request
    resp = tx.response
    fc = tx.function
    reads: list[tuple[str, int, int]] = []
    writes: list[tuple[str, int, int]] = []
    written: list[tuple[str, int, float]] = []
    read_values: list[tuple[str, int, float]] = []
    if req is not None and req.valid:
        rt = READ_TABLE.get(fc)
        if rt is not None and req.address is not None and req.quantity:
            reads.append((rt, req.address, req.address + req.quantity - 1))
        wt = WRITE_TABLE.get(fc)
        if fc == 23:
            if req.write_address is not None and req.write_quantity:
                writes.append((HOLDING, req.write_address, req.write_address + req.write_quantity - 1))
                written.extend(
                    (HOLDING, req.write_address + i, float(v)) for i, v in enumerate(req.write_values)
                )
        elif wt is not None and req.address is not None:
            qty = req.quantity or 1
            writes.append((wt, req.address, req.address + qty - 1))
            written.extend((wt, req.address + i, float(v)) for i, v in enumerate(req.values))
    if resp is not None and resp.valid and tx.status == "ok" and req is not None:
        rt = READ_TABLE.get(fc)
        if rt in REGISTER_TABLES and req.address is not None and resp.values:
            read_values.extend((rt, req.address + i, float(v)) for i, v in enumerate(resp.values))
    return ModbusOp(
        ts=tx.request_ts if tx.request_ts is not None else tx.ts,
        client=flow.client_ip,
        server=flow.server_ip,
        unit=tx.unit_id,
        function=fc,
        subfunction=req.subfunction if req is not None else None,
        status=tx.status,
        exception_code=tx.exception_code,
        reads=tuple(reads),
        writes=tuple(writes),
        written=tuple(written),
        read_values=tuple(read_values),
        device_id=fc == 43 and req is not None and req.mei_type == 14,
    )


def modbus_facts(op: ModbusOp) -> list[Fact]:
    """Facts of a Modbus operation, general to specific (the order novelty reporting relies on)."""
    c, s, u = op.client, op.server, op.unit
    facts: list[Fact] = [("asset", c), ("asset", s), ("edge", c, s, "modbus")]
    if op.status == "unsolicited":
        return facts  # a response alone says nothing reliable about what the client asked
    facts.append(("modbus_unit", c, s, u))
    facts.append(("modbus_function", c, s, u, op.function))
    facts.extend(("modbus_read", c, s, u, t, a, b) for t, a, b in op.reads)
    facts.extend(("modbus_write", c, s, u, t, a, b) for t, a, b in op.writes)
    facts.extend(("modbus_written_value", s, u, t, a, v) for t, a, v in op.written)
    return facts


def opcua_facts(msg: OpcUaMessage) -> list[Fact]:
    flow = msg.flow
    if flow is None:
        return []
    c, s = flow.client_ip, flow.server_ip
    facts: list[Fact] = [("asset", c), ("asset", s), ("edge", c, s, "opcua")]
    if msg.security_mode and msg.security_policy:
        facts.append(("opcua_security", c, s, msg.security_mode, msg.security_policy.rsplit("#", 1)[-1]))
    if msg.service and msg.request is not None and msg.service != "ServiceFault":
        facts.append(("opcua_service", c, s, msg.service))
        req = msg.request
        if msg.service == "Write":
            for item in req.get("nodes_to_write") or ():
                if isinstance(item, dict) and "node_id" in item:
                    facts.append(("opcua_write", c, s, str(item["node_id"])))
        elif msg.service == "Call":
            for item in req.get("methods_to_call") or ():
                if isinstance(item, dict) and "method_id" in item:
                    facts.append(("opcua_call", c, s, str(item["method_id"])))
    return facts


def mqtt_client_name(pkt: MqttPacket, flow: FlowRef) -> str:
    """The client id, or the host when the CONNECT was not seen (mid-stream pickup)."""
    return pkt.client_id or f"@{flow.client_ip}"


def mqtt_facts(pkt: MqttPacket) -> list[Fact]:
    flow = pkt.flow
    if flow is None:
        return []
    c, broker = flow.client_ip, flow.server_ip
    facts: list[Fact] = [("asset", c), ("asset", broker), ("edge", c, broker, "mqtt")]
    m = pkt.message
    if not pkt.to_server or m is None:
        return facts
    name = mqtt_client_name(pkt, flow)
    if isinstance(m, Connect):
        facts.append(("mqtt_client", broker, m.client_id or name, c))
    elif isinstance(m, Publish) and m.topic:
        facts.append(("mqtt_publish", broker, m.topic, name))
        facts.append(("mqtt_qos", broker, m.topic, m.qos))
        if m.retain:
            facts.append(("mqtt_retain", broker, m.topic, name))
    elif isinstance(m, Subscribe):
        facts.extend(("mqtt_subscribe", broker, sub.topic_filter, name) for sub in m.subscriptions)
    return facts


def flow_is_probe(fs: FlowSummary) -> bool:
    """A TCP connection attempt that carried nothing: SYN unanswered, or answered by a reset."""
    return (
        fs.flow.transport == "tcp"
        and not fs.app_proto
        and fs.pkts_toclient <= 1
        and fs.pkts_toserver <= 3
        and (fs.state == "new" or fs.reason == "rst")
    )


def flow_facts(fs: FlowSummary) -> list[Fact]:
    """Assets and the edge of an ended flow that no dissector claimed (claimed ones come earlier)."""
    if fs.app_proto or flow_is_probe(fs):
        return []
    f = fs.flow
    if not (fs.pkts_toserver and fs.pkts_toclient) or is_special_address(f.server_ip):
        return []
    return [
        ("asset", f.client_ip),
        ("asset", f.server_ip),
        ("edge", f.client_ip, f.server_ip, f"{f.transport}/{f.server_port}"),
    ]


def anomaly_fact(a: ProtocolAnomaly) -> Fact | None:
    if a.flow is None:
        return None
    return ("protocol_anomaly", a.flow.client_ip, a.flow.server_ip, a.kind)


# --- process values -----------------------------------------------------------------------------------


def _numeric(variant: Any) -> float | None:
    """The number inside a decoded OPC UA DataValue/Variant dict, if it holds a scalar number."""
    if isinstance(variant, dict) and "value" in variant and isinstance(variant["value"], dict):
        variant = variant["value"]  # DataValue -> Variant
    if not isinstance(variant, dict) or variant.get("type") not in NUMERIC_VARIANTS:
        return None
    v = variant.get("value")
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def mqtt_numbers(preview: str) -> list[tuple[str, float]]:
    """Numbers in an MQTT payload: a bare number, or the numeric top-level fields of a JSON object."""
    text = preview.strip()
    if not text or len(text) > 64:
        return []
    if text[0] == "{":
        try:
            obj = json.loads(text)
        except ValueError:
            return []
        if not isinstance(obj, dict):
            return []
        return [
            (str(k), float(v))
            for k, v in obj.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
    try:
        value = float(text)
    except ValueError:
        return []
    return [("", value)] if math.isfinite(value) else []


class ValueExtractor:
    """Numeric process values of events, keyed ``(protocol, server, ...)``.

    Keeps the OPC UA (flow, client handle) -> node map that Publish notifications need (bounded).
    """

    def __init__(self) -> None:
        self._handles: OrderedDict[tuple[int, int], str] = OrderedDict()

    def modbus(self, op: ModbusOp) -> list[tuple[tuple[Any, ...], float]]:
        return [(("modbus", op.server, op.unit, t, a), v) for t, a, v in op.read_values]

    def opcua(self, msg: OpcUaMessage) -> list[tuple[tuple[Any, ...], float]]:
        flow = msg.flow
        if flow is None or msg.request is None:
            return []
        out: list[tuple[tuple[Any, ...], float]] = []
        server = flow.server_ip
        if msg.service == "CreateMonitoredItems":
            for item in msg.request.get("items_to_create") or ():
                if isinstance(item, dict) and item.get("attribute") == "Value" and "client_handle" in item:
                    self._handles[(flow.flow_id, int(item["client_handle"]))] = str(item.get("node_id"))
                    while len(self._handles) > MAX_HANDLES:
                        self._handles.popitem(last=False)
        elif msg.service == "Read" and msg.response is not None:
            nodes = msg.request.get("nodes_to_read") or []
            results = msg.response.get("results") or []
            for node, result in zip(nodes, results, strict=False):
                if isinstance(node, dict) and node.get("attribute") == "Value":
                    v = _numeric(result)
                    if v is not None:
                        out.append((("opcua", server, str(node.get("node_id"))), v))
        elif msg.service == "Publish" and msg.response is not None:
            for note in msg.response.get("notifications") or ():
                if not isinstance(note, dict):
                    continue
                for item in note.get("monitored_items") or ():
                    if not isinstance(item, dict):
                        continue
                    node = self._handles.get((flow.flow_id, int(item.get("client_handle", -1))))
                    v = _numeric(item.get("value"))
                    if node is not None and v is not None:
                        out.append((("opcua", server, node), v))
        return out

    def mqtt(self, pkt: MqttPacket) -> list[tuple[tuple[Any, ...], float]]:
        m = pkt.message
        if not pkt.to_server or not isinstance(m, Publish) or pkt.flow is None or not m.topic:
            return []
        if m.payload_size > len(m.payload_preview):
            return []  # only part of the payload was kept: do not guess at its numbers
        return [
            (("mqtt", pkt.flow.server_ip, m.topic, name), v) for name, v in mqtt_numbers(m.payload_preview)
        ]


def poll_key(op: ModbusOp) -> tuple[Any, ...] | None:
    """The polled series a read belongs to: (client, server, unit, function, first address)."""
    if not op.reads or op.status == "unsolicited":
        return None
    return (op.client, op.server, op.unit, op.function, op.reads[0][1])


class Learner:
    """Folds events into a :class:`Baseline` (learning mode, or per-asset re-learning)."""

    def __init__(self, baseline: Baseline, max_series: int) -> None:
        self.baseline = baseline
        self.max_series = max_series
        self.last_poll: dict[tuple[Any, ...], float] = {}
        self.last_value: dict[tuple[Any, ...], tuple[float, float]] = {}

    def facts(self, facts: list[Fact], ts: float) -> None:
        b = self.baseline
        if not b.created:
            b.created = ts
        add = b.add
        for fact in facts:
            add(fact)

    def poll(self, key: tuple[Any, ...], ts: float) -> None:
        polls = self.baseline.polls
        stats = polls.get(key)
        if stats is None:
            if len(polls) >= self.max_series:
                return  # untracked: remembering its last poll would grow without bound
            stats = polls[key] = RunningStats()
        last = self.last_poll.get(key)
        self.last_poll[key] = ts
        if last is not None and ts > last:
            stats.add(ts - last)

    def value(self, key: tuple[Any, ...], v: float, ts: float) -> None:
        values = self.baseline.values
        vs = values.get(key)
        if vs is None:
            if len(values) >= self.max_series:
                return
            vs = values[key] = ValueStats(RunningStats())
        vs.stats.add(v)
        prev = self.last_value.get(key)
        self.last_value[key] = (v, ts)
        if prev is not None and v != prev[0]:
            if v > prev[0]:
                vs.ups += 1
            else:
                vs.downs += 1
        if prev is not None and ts - prev[1] >= MIN_RATE_DT:
            rate = abs(v - prev[0]) / (ts - prev[1])
            if rate > vs.max_rate:
                vs.max_rate = rate
