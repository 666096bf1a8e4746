"""Judging one operation against a compiled policy: pure functions, no I/O, no clock.

An operation is what one event asks a responder to do, seen from the flow's initiator:

==============================  ============================================================
event                           operation(s)
==============================  ============================================================
``ModbusTransaction``           the request: function, unit, table/address span, write values
``OpcUaMessage`` (request)      the service (and node ids of Write/Call, the token type of
                                ActivateSession) under the message's security mode/policy
``OpcUaChannelEvent`` (mode)    opening a secure channel with a security mode and policy
``MqttPacket`` CONNECT          connecting (client id, TLS), plus the will as a publish
``MqttPacket`` PUBLISH → broker publishing a topic with a QoS and retain flag
``MqttPacket`` SUBSCRIBE        one operation per topic filter requested
``FlowSummary``                 a flow of another protocol (name, transport, server port), or
                                of a native protocol that carried no operation
==============================  ============================================================

The zones of the two ends pick the conduits (initiator zone → responder zone). The operation is
allowed when an allow entry of its protocol in one of them allows it; otherwise the verdict names the
reason found by the entry that matched the operation furthest (checks run in a fixed order per
protocol, e.g. Modbus: port, function, unit, address, value), so a write to a wrong register of an
allowed function says ``address_out_of_range``, not ``function_not_allowed``. Without a conduit,
traffic inside a zone is allowed unless the zone says ``intra_zone: deny``, and traffic between zones
follows ``default`` (``no_conduit`` when it is ``deny``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from policy.index import (
    SECURITY_MODE_RANK,
    UNZONED,
    CompiledConduit,
    CompiledPolicy,
    ModbusRule,
    MqttRule,
    OpcUaRule,
    OtherRule,
    filter_covers,
    policy_short_name,
    split_filter,
    topic_matches,
)
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.dissectors.mqtt import codes as mqtt_codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish, Subscribe
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage
from sensor.records import FlowRef, FlowSummary

NATIVE = frozenset({"modbus", "opcua", "mqtt"})

# Session management and discovery: a client cannot use any service without them (OPC 10000-4 §5.4-5.6).
OPCUA_IMPLIED_SERVICES = frozenset(
    {
        "OpenSecureChannel",
        "CloseSecureChannel",
        "CreateSession",
        "ActivateSession",
        "CloseSession",
        "GetEndpoints",
        "FindServers",
        "FindServersOnNetwork",
    }
)
OPCUA_NODE_SERVICES = frozenset({"Write", "Call"})


class Verdict(NamedTuple):
    """The outcome of judging one operation. ``evidence`` is only built for a denial."""

    allowed: bool
    reason: str  # "" when allowed
    protocol: str
    operation: str  # short label for reports: "write_single_coil", "Write", "publish", "tcp/139"
    src_zone: str
    dest_zone: str
    conduit: str  # "" when no conduit covered the traffic
    rule_index: int  # index of the allow entry that allowed it (-1 otherwise)
    scope: str  # "conduit" | "intra_zone" | "default_allow" | "no_conduit"
    detail: str
    evidence: dict[str, Any] | None
    severity: int = 2
    mitre: tuple[str, ...] = ()

    @property
    def pair(self) -> str:
        """The conduit id, or ``src->dst`` zone pair, used in the rule id."""
        return self.conduit or f"{self.src_zone}->{self.dest_zone}"

    @property
    def rule(self) -> str:
        return f"policy:{self.pair}:{self.reason}"


class _Failure(NamedTuple):
    depth: int
    reason: str
    detail: str


# --- operations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModbusOp:
    function: int
    name: str
    category: str
    unit: int
    port: int
    spans: tuple[tuple[str, int, int, bool], ...]  # (table, first, last, is_write)
    writes: tuple[tuple[str, tuple[int, ...]], ...]  # (table, values)
    status: str

    def label(self) -> str:
        return self.name

    def describe(self) -> str:
        text = f"{self.name} (FC{self.function}) unit {self.unit}"
        for table, lo, hi, is_write in self.spans:
            text += f" {'write' if is_write else 'read'} {table} {lo}" + (f"-{hi}" if hi != lo else "")
        for table, values in self.writes:
            shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
            text += f" {table}=[{shown}]"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "function_name": self.name,
            "category": self.category,
            "unit_id": self.unit,
            "spans": [{"table": t, "first": lo, "last": hi, "write": w} for t, lo, hi, w in self.spans],
            "values": {t: list(v[:32]) for t, v in self.writes},
            "status": self.status,
        }


_READ_TABLE = {1: "coils", 2: "discrete_inputs", 3: "holding_registers", 4: "input_registers"}


def modbus_operation(tx: ModbusTransaction) -> ModbusOp:
    """The request a transaction carried: tables and 0-based address spans (MODBUS v1.1b3 §6)."""
    fc = tx.function
    port = tx.flow.server_port if tx.flow else 0
    pdu = tx.request if tx.request is not None else tx.response
    spans: list[tuple[str, int, int, bool]] = []
    writes: list[tuple[str, tuple[int, ...]]] = []
    if pdu is not None and pdu.address is not None:
        addr = pdu.address
        qty = pdu.quantity if pdu.quantity else 1
        if fc in _READ_TABLE:
            spans.append((_READ_TABLE[fc], addr, min(addr + qty - 1, 65535), False))
        elif fc in (5, 15):
            spans.append(("coils", addr, min(addr + qty - 1, 65535), True))
            if tx.request is not None and tx.request.values:
                writes.append(("coils", tuple(int(v) for v in tx.request.values)))
        elif fc in (6, 16):
            spans.append(("holding_registers", addr, min(addr + qty - 1, 65535), True))
            if tx.request is not None and tx.request.values:
                writes.append(("holding_registers", tuple(tx.request.values)))
        elif fc == 22:
            spans.append(("holding_registers", addr, addr, True))
        elif fc == 23:
            spans.append(("holding_registers", addr, min(addr + qty - 1, 65535), False))
        elif fc == 24:
            spans.append(("holding_registers", addr, addr, False))
    if fc == 23 and tx.request is not None and tx.request.write_address is not None:
        wa = tx.request.write_address
        wq = tx.request.write_quantity or 1
        spans.append(("holding_registers", wa, min(wa + wq - 1, 65535), True))
        if tx.request.write_values:
            writes.append(("holding_registers", tuple(tx.request.write_values)))
    return ModbusOp(
        function=fc,
        name=tx.function_name,
        category=tx.category,
        unit=tx.unit_id,
        port=port,
        spans=tuple(spans),
        writes=tuple(writes),
        status=tx.status,
    )


def _check_modbus(rule: ModbusRule, op: ModbusOp) -> _Failure | None:
    if op.port not in rule.ports:
        return _Failure(0, "port_not_allowed", f"port {op.port} not in {rule.ports.text()}")
    if rule.functions is not None and op.function not in rule.functions:
        return _Failure(1, "function_not_allowed", f"{op.name} (FC{op.function}) not allowed")
    if rule.units is not None and op.unit not in rule.units:
        return _Failure(2, "unit_not_allowed", f"unit {op.unit} not in {rule.units.text()}")
    for table, lo, hi, _w in op.spans:
        allowed = rule.addresses.get(table)
        if allowed is not None and not allowed.covers(lo, hi):
            span = f"{lo}-{hi}" if hi != lo else str(lo)
            return _Failure(3, "address_out_of_range", f"{table} {span} outside {allowed.text()}")
    for table, values in op.writes:
        allowed = rule.values.get(table)
        if allowed is not None:
            for v in values:
                if v not in allowed:
                    return _Failure(4, "value_out_of_range", f"{table} value {v} outside {allowed.text()}")
    return None


@dataclass(frozen=True, slots=True)
class OpcUaOp:
    service: str  # "" for the channel itself
    mode: str  # "" unknown
    policy: str  # short name, "" unknown
    nodes: tuple[str, ...]
    token_type: str
    port: int

    def label(self) -> str:
        return self.service or "secure_channel"

    def describe(self) -> str:
        text = self.service or "secure channel"
        if self.nodes:
            text += " " + ", ".join(self.nodes[:5]) + (" ..." if len(self.nodes) > 5 else "")
        if self.token_type:
            text += f" token {self.token_type}"
        if self.mode:
            text += f" mode {self.mode}"
        if self.policy:
            text += f" policy {self.policy}"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service": self.label(),
            "security_mode": self.mode,
            "security_policy": self.policy,
        }
        if self.nodes:
            out["nodes"] = list(self.nodes[:32])
        if self.token_type:
            out["user_token_type"] = self.token_type
        return out


def _namespace(node_id: str) -> int:
    if node_id.startswith("ns="):
        head = node_id[3 : node_id.find(";")] if ";" in node_id else ""
        return int(head) if head.isdigit() else -1
    return 0


def opcua_message_operation(msg: OpcUaMessage) -> OpcUaOp | None:
    """The service a request asked for; ``None`` for messages that are not requests."""
    if not msg.to_server or not msg.service or msg.service == "ServiceFault":
        return None
    nodes: list[str] = []
    token = ""
    req = msg.request or {}
    if msg.service == "Write":
        for item in req.get("nodes_to_write") or ():
            if isinstance(item, dict) and isinstance(item.get("node_id"), str):
                nodes.append(item["node_id"])
    elif msg.service == "Call":
        for item in req.get("methods_to_call") or ():
            if isinstance(item, dict) and isinstance(item.get("method_id"), str):
                nodes.append(item["method_id"])
    elif msg.service == "ActivateSession":
        tok = req.get("user_identity_token")
        if isinstance(tok, dict) and isinstance(tok.get("token_type"), str):
            token = tok["token_type"]
    return OpcUaOp(
        service=msg.service,
        mode=msg.security_mode,
        policy=policy_short_name(msg.security_policy),
        nodes=tuple(nodes),
        token_type=token,
        port=msg.flow.server_port if msg.flow else 0,
    )


def opcua_channel_operation(ev: OpcUaChannelEvent) -> OpcUaOp | None:
    if ev.kind != "mode" or not ev.security_mode:
        return None
    return OpcUaOp(
        service="",
        mode=ev.security_mode,
        policy=policy_short_name(ev.security_policy),
        nodes=(),
        token_type="",
        port=ev.flow.server_port if ev.flow else 0,
    )


def _check_opcua(rule: OpcUaRule, op: OpcUaOp) -> _Failure | None:
    if op.port not in rule.ports:
        return _Failure(0, "port_not_allowed", f"port {op.port} not in {rule.ports.text()}")
    if op.mode and SECURITY_MODE_RANK.get(op.mode, 0) < rule.min_mode:
        return _Failure(
            1, "security_mode_too_low", f"security mode {op.mode} below {rule.entry.min_security_mode}"
        )
    if op.policy and rule.policies is not None and op.policy not in rule.policies:
        return _Failure(
            2, "policy_not_allowed", f"security policy {op.policy} not in {sorted(rule.policies)}"
        )
    if (
        op.service
        and op.service not in OPCUA_IMPLIED_SERVICES
        and rule.services is not None
        and op.service not in rule.services
    ):
        return _Failure(3, "service_not_allowed", f"service {op.service} not allowed")
    if op.token_type and rule.token_types is not None and op.token_type not in rule.token_types:
        return _Failure(
            4, "token_type_not_allowed", f"user token {op.token_type} not in {sorted(rule.token_types)}"
        )
    if op.service in OPCUA_NODE_SERVICES and (rule.nodes is not None or rule.namespaces is not None):
        for node in op.nodes:
            if rule.nodes is not None and node in rule.nodes:
                continue
            if rule.namespaces is not None and _namespace(node) in rule.namespaces:
                continue
            return _Failure(5, "node_not_allowed", f"{op.service} on node {node} not allowed")
    return None


@dataclass(frozen=True, slots=True)
class MqttOp:
    action: str  # "connect" | "publish" | "will" | "subscribe"
    topic: str  # topic name, or filter for subscribe
    qos: int
    retain: bool
    client_id: str
    tls: bool
    port: int

    def label(self) -> str:
        return self.action

    def describe(self) -> str:
        if self.action == "connect":
            return f"CONNECT client {self.client_id or '?'}"
        text = f"{self.action.upper()} {self.topic!r} qos {self.qos}"
        if self.retain:
            text += " retain"
        if self.client_id:
            text += f" client {self.client_id}"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "client_id": self.client_id, "tls": self.tls}
        if self.action != "connect":
            out.update(topic=self.topic, qos=self.qos, retain=self.retain)
        return out


def mqtt_operations(pkt: MqttPacket) -> list[MqttOp]:
    """Client-side operations of one MQTT packet (deliveries from the broker are not operations)."""
    if not pkt.to_server or pkt.message is None:
        return []
    port = pkt.flow.server_port if pkt.flow else 0
    m = pkt.message
    if pkt.packet_type == mqtt_codes.PUBLISH and isinstance(m, Publish):
        return [MqttOp("publish", m.topic, m.qos, m.retain, pkt.client_id, False, port)]
    if pkt.packet_type == mqtt_codes.SUBSCRIBE and isinstance(m, Subscribe):
        return [
            MqttOp("subscribe", s.topic_filter, s.qos, False, pkt.client_id, False, port)
            for s in m.subscriptions
        ]
    if pkt.packet_type == mqtt_codes.CONNECT and isinstance(m, Connect):
        ops = [MqttOp("connect", "", 0, False, m.client_id, False, port)]
        if m.will is not None:
            ops.append(MqttOp("will", m.will.topic, m.will.qos, m.will.retain, m.client_id, False, port))
        return ops
    return []


def _check_mqtt(rule: MqttRule, op: MqttOp) -> _Failure | None:
    ports = rule.tls_ports if op.tls else rule.ports
    if op.port not in ports:
        return _Failure(0, "port_not_allowed", f"port {op.port} not in {ports.text()}")
    if op.client_id and not rule.client_allowed(op.client_id):
        return _Failure(1, "client_not_allowed", f"client id {op.client_id!r} not allowed")
    if op.action in ("publish", "will"):
        if rule.publish is not None and not any(topic_matches(f, op.topic) for f in rule.publish):
            return _Failure(3, "topic_not_allowed", f"publish to {op.topic!r} not allowed")
    elif op.action == "subscribe" and rule.subscribe is not None:
        wanted = split_filter(op.topic)
        if not any(filter_covers(f, wanted) for f in rule.subscribe):
            return _Failure(3, "topic_not_allowed", f"subscription to {op.topic!r} not allowed")
    if op.action != "connect":
        if rule.qos is not None and op.qos not in rule.qos:
            return _Failure(4, "qos_not_allowed", f"QoS {op.qos} not in {sorted(rule.qos)}")
        if op.retain and not rule.retain:
            return _Failure(5, "retain_not_allowed", "retained message not allowed")
    if rule.require_tls and not op.tls:
        # checked last: of two entries, the one whose topics match explains the denial best
        return _Failure(6, "tls_required", "MQTT in cleartext where the conduit requires TLS")
    return None


@dataclass(frozen=True, slots=True)
class FlowOp:
    protocol: str  # app_proto, a tshark name, or "" (unknown)
    transport: str
    port: int

    def label(self) -> str:
        return f"{self.transport}/{self.port}"

    def describe(self) -> str:
        return f"{self.protocol or 'unidentified'} flow on {self.transport}/{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol or "unknown", "transport": self.transport, "port": self.port}


def _check_other(rule: OtherRule, op: FlowOp) -> _Failure | None:
    name = op.protocol or "unknown"
    if rule.protocol not in ("any", name):
        return _Failure(0, "protocol_not_allowed", f"protocol {name} not allowed")
    if rule.transport != "any" and rule.transport != op.transport:
        return _Failure(1, "protocol_not_allowed", f"{name} over {op.transport} not allowed")
    if rule.ports is not None and op.port not in rule.ports:
        return _Failure(2, "port_not_allowed", f"port {op.port} not in {rule.ports.text()}")
    return None


def _flow_native_rule(conduit: CompiledConduit, op: FlowOp) -> int:
    """Index of a native entry that covers a flow at connection level, or -1.

    A flow the dissector claimed is covered by any entry of its protocol (its operations are judged
    one by one); TLS is covered by an MQTT entry listing the port as an MQTT-over-TLS port; a flow
    nobody recognised (a bare connection, a port scan) by an entry whose ports include its port.
    """
    if op.protocol in NATIVE:
        rules: Sequence[ModbusRule | OpcUaRule | MqttRule] = getattr(conduit, op.protocol)
        return rules[0].index if rules else -1
    if op.transport != "tcp":
        return -1
    if op.protocol == "tls":
        for m in conduit.mqtt:
            if op.port in m.tls_ports:
                return m.index
        return -1
    if not op.protocol:
        for rules2 in (conduit.modbus, conduit.opcua, conduit.mqtt):
            for r in rules2:
                if op.port in r.ports or (isinstance(r, MqttRule) and op.port in r.tls_ports):
                    return r.index
    return -1


# --- judging -----------------------------------------------------------------------------------


def _severity(protocol: str, reason: str, op: Any) -> tuple[int, tuple[str, ...]]:
    if protocol == "modbus" and isinstance(op, ModbusOp):
        if op.category == "program":
            return 1, ("T0843",)
        if op.category == "write":
            if reason in ("address_out_of_range", "value_out_of_range"):
                return 1, ("T0836",)
            return 1, ("T0855",)
        if reason == "function_not_allowed" and op.category == "diagnostic":
            return 2, ("T0855",)
    if (
        protocol == "opcua"
        and isinstance(op, OpcUaOp)
        and op.service in ("Write", "Call", "AddNodes", "DeleteNodes")
    ):
        return 1, ("T0855",)
    if reason in ("port_not_allowed", "qos_not_allowed", "retain_not_allowed"):
        return 3, ()
    return 2, ()


def _verdict(
    allowed: bool,
    reason: str,
    protocol: str,
    op: ModbusOp | OpcUaOp | MqttOp | FlowOp,
    flow: FlowRef,
    src_zone: str,
    dest_zone: str,
    conduit: str,
    rule_index: int,
    scope: str,
    detail: str,
) -> Verdict:
    if allowed:
        return Verdict(
            True, "", protocol, op.label(), src_zone, dest_zone, conduit, rule_index, scope, "", None
        )
    severity, mitre = _severity(protocol, reason, op)
    evidence = {
        "reason": reason,
        "detail": detail,
        "protocol": protocol,
        "operation": op.as_dict(),
        "summary": op.describe(),
        "src_ip": flow.client_ip,
        "dest_ip": flow.server_ip,
        "dest_port": flow.server_port,
        "transport": flow.transport,
        "src_zone": src_zone,
        "dest_zone": dest_zone,
        "conduit": conduit,
    }
    return Verdict(
        False,
        reason,
        protocol,
        op.label(),
        src_zone,
        dest_zone,
        conduit,
        -1,
        scope,
        detail,
        evidence,
        severity,
        mitre,
    )


def _judge(
    policy: CompiledPolicy,
    flow: FlowRef,
    ts: float,
    protocol: str,
    op: ModbusOp | OpcUaOp | MqttOp | FlowOp,
) -> Verdict:
    zs = policy.zone_of(flow.client_ip, flow.client_mac, ts)
    zd = policy.zone_of(flow.server_ip, flow.server_mac, ts)
    src = zs.id if zs is not None else UNZONED
    dst = zd.id if zd is not None else UNZONED
    conduits = policy.conduits_between(src, dst) if zs is not None and zd is not None else ()
    if not conduits:
        intra = zs is not None and zs is zd
        if intra and zs is not None and zs.intra_zone == "allow":
            return _verdict(True, "", protocol, op, flow, src, dst, "", -1, "intra_zone", "")
        if not intra and not policy.default_deny:
            return _verdict(True, "", protocol, op, flow, src, dst, "", -1, "default_allow", "")
        detail = (
            f"zone {src} denies traffic between its members"
            if zs is not None and zs is zd
            else f"no conduit from {src} to {dst}"
        )
        return _verdict(False, "no_conduit", protocol, op, flow, src, dst, "", -1, "no_conduit", detail)
    best: tuple[_Failure, str] | None = None
    seen_protocol = False
    for conduit in conduits:
        failure: _Failure | None
        if isinstance(op, FlowOp):
            index = _flow_native_rule(conduit, op)
            if index >= 0:
                return _verdict(True, "", protocol, op, flow, src, dst, conduit.id, index, "conduit", "")
            for other in conduit.other:
                seen_protocol = True
                failure = _check_other(other, op)
                if failure is None:
                    return _verdict(
                        True, "", protocol, op, flow, src, dst, conduit.id, other.index, "conduit", ""
                    )
                if best is None or failure.depth > best[0].depth:
                    best = (failure, conduit.id)
            continue
        if isinstance(op, ModbusOp):
            for mr in conduit.modbus:
                seen_protocol = True
                failure = _check_modbus(mr, op)
                if failure is None:
                    return _verdict(
                        True, "", protocol, op, flow, src, dst, conduit.id, mr.index, "conduit", ""
                    )
                if best is None or failure.depth > best[0].depth:
                    best = (failure, conduit.id)
        elif isinstance(op, OpcUaOp):
            for orule in conduit.opcua:
                seen_protocol = True
                failure = _check_opcua(orule, op)
                if failure is None:
                    return _verdict(
                        True, "", protocol, op, flow, src, dst, conduit.id, orule.index, "conduit", ""
                    )
                if best is None or failure.depth > best[0].depth:
                    best = (failure, conduit.id)
        else:
            for qrule in conduit.mqtt:
                seen_protocol = True
                failure = _check_mqtt(qrule, op)
                if failure is None:
                    return _verdict(
                        True, "", protocol, op, flow, src, dst, conduit.id, qrule.index, "conduit", ""
                    )
                if best is None or failure.depth > best[0].depth:
                    best = (failure, conduit.id)
    if best is None or not seen_protocol:
        name = protocol or "unknown"
        return _verdict(
            False,
            "protocol_not_allowed",
            protocol,
            op,
            flow,
            src,
            dst,
            conduits[0].id,
            -1,
            "conduit",
            f"conduit {conduits[0].id} has no entry for {name}",
        )
    failure, conduit_id = best
    return _verdict(
        False, failure.reason, protocol, op, flow, src, dst, conduit_id, -1, "conduit", failure.detail
    )


def evaluate_modbus(policy: CompiledPolicy, tx: ModbusTransaction) -> list[Verdict]:
    if tx.flow is None:
        return []
    return [_judge(policy, tx.flow, tx.ts, "modbus", modbus_operation(tx))]


def evaluate_opcua_message(policy: CompiledPolicy, msg: OpcUaMessage) -> list[Verdict]:
    op = opcua_message_operation(msg)
    if op is None or msg.flow is None:
        return []
    return [_judge(policy, msg.flow, msg.ts, "opcua", op)]


def evaluate_opcua_channel(policy: CompiledPolicy, ev: OpcUaChannelEvent) -> list[Verdict]:
    op = opcua_channel_operation(ev)
    if op is None or ev.flow is None:
        return []
    return [_judge(policy, ev.flow, ev.ts, "opcua", op)]


def evaluate_mqtt(policy: CompiledPolicy, pkt: MqttPacket) -> list[Verdict]:
    if pkt.flow is None:
        return []
    return [_judge(policy, pkt.flow, pkt.ts, "mqtt", op) for op in mqtt_operations(pkt)]


def evaluate_flow(policy: CompiledPolicy, summary: FlowSummary, protocol: str | None = None) -> list[Verdict]:
    """A flow judged at connection level; ``protocol`` overrides the app_proto (tshark's name)."""
    flow = summary.flow
    name = protocol if protocol is not None else summary.app_proto
    op = FlowOp(name, flow.transport, flow.server_port)
    return [_judge(policy, flow, summary.ts, name or "unknown", op)]
