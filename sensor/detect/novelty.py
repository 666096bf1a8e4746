"""Novelty: what the baseline never saw (new asset, edge, protocol, unit, function code, service,
topic, address range, written node) and written values outside their learned range.

One event reports its most general novelty only: a new host that reads registers is a
``new_asset``, not also a new edge, unit, function code and range (the facts of all of them travel
in the evidence, so accepting the alert teaches the whole operation). Writes are judged on their
own as well, because a write is what changes the process: a known host writing a range it never
wrote is ``new_write_range``; a host that never wrote anything writing is ``rogue_master_write``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sensor.detect.baseline import Baseline, Fact, format_intervals
from sensor.detect.findings import Finding
from sensor.detect.learn import TABLE_WORDS, ModbusOp
from sensor.dissectors.modbus.codes import function_name
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.records import FlowRef

Emit = Callable[[Finding], None]

# Section of the first unknown fact -> the kind reported for it (after asset and edge).
_FIRST_KIND = {
    "modbus_unit": "new_modbus_unit",
    "modbus_function": "new_function_code",
    "modbus_read": "new_read_range",
    "opcua_service": "new_opcua_service",
    "opcua_security": "new_opcua_security",
    "mqtt_client": "new_mqtt_client",
    "mqtt_publish": "new_mqtt_topic",
    "mqtt_subscribe": "new_mqtt_topic",
    "mqtt_qos": "new_mqtt_qos",
}
_WRITE_SECTIONS = frozenset({"modbus_write", "modbus_written_value", "opcua_write", "mqtt_retain"})
# judged by another detector with its own kind (impairment: opcua_unexpected_call)
_ELSEWHERE = frozenset({"opcua_call"})


def _fc(fc: int) -> str:
    return f"FC {fc} ({function_name(fc)})"


class NoveltyDetector:
    def __init__(self, baseline: Baseline, emit: Emit) -> None:
        self.baseline = baseline
        self.emit = emit
        self._writers: set[str] | None = None  # clients that wrote anything in the baseline

    def writers(self) -> set[str]:
        if self._writers is None:
            self._writers = {k[0] for k in self.baseline.ranges["modbus_write"]}
        return self._writers

    def baseline_changed(self) -> None:
        self._writers = None

    # --- generic chain ------------------------------------------------------------------------------

    def check(
        self,
        facts: list[Fact],
        ts: float,
        flow: FlowRef,
        app_proto: str,
        describe: Callable[[Fact], str],
        details: dict[str, Any],
    ) -> list[Fact]:
        """Report the most general unknown fact; return every unknown fact (for write checks)."""
        knows = self.baseline.knows
        unknown = [f for f in facts if not knows(f)]
        if not unknown:
            return unknown
        general = [f for f in unknown if f[0] not in _WRITE_SECTIONS and f[0] not in _ELSEWHERE]
        if not general:
            return unknown
        first = general[0]
        src, dst = flow.client_ip, flow.server_ip
        section = first[0]
        if section == "asset":
            kind = "new_asset"
            role = "client" if first[1] == src else "server"
            peer = dst if role == "client" else src
            text = f"never seen: host {first[1]} ({app_proto} {role} of {peer}; {describe(first)})"
        elif section == "edge":
            known = sorted(f[3] for f in self.baseline.sets["edge"] if f[1] == first[1] and f[2] == first[2])
            if known:
                kind = "new_protocol"
                text = f"never seen: {first[3]} from {src} to {dst} (known on this edge: {', '.join(known)})"
            else:
                kind = "new_edge"
                text = f"never seen: {src} talking {first[3]} to {dst} ({describe(first)})"
        else:
            kind = _FIRST_KIND.get(section, "new_edge")
            text = f"never seen: {describe(first)}"
        self.emit(
            Finding(kind, ts, src, dst, text, flow=flow, app_proto=app_proto, facts=general, details=details)
        )
        return unknown

    # --- Modbus ----------------------------------------------------------------------------------

    def modbus(self, op: ModbusOp, facts: list[Fact], flow: FlowRef, details: dict[str, Any]) -> None:
        def describe(f: Fact) -> str:
            s = f[0]
            if s in ("asset", "edge", "modbus_unit"):
                what = f"{_fc(op.function)} to unit {op.unit}"
                rng = op.writes or op.reads
                if rng:
                    t, a, b = rng[0]
                    what += f", {TABLE_WORDS[t]} {format_intervals([(a, b)])}"
                return what
            if s == "modbus_function":
                return f"{_fc(op.function)} from {op.client} to {op.server} unit {op.unit}"
            if s == "modbus_read":
                known = self.baseline.ranges["modbus_read"].get(f[1:5]) or []
                return (
                    f"read of {TABLE_WORDS[f[4]]} {format_intervals([(f[5], f[6])])} by {op.client} on "
                    f"{op.server} unit {op.unit} ({_fc(op.function)}; known: "
                    f"{format_intervals(known) or 'none'})"
                )
            return str(f)

        unknown = self.check(facts, op.ts, flow, "modbus", describe, details)
        if not unknown:
            return
        unknown_writes = [f for f in unknown if f[0] == "modbus_write"]
        if unknown_writes:
            f = unknown_writes[0]
            span = format_intervals([(f[5], f[6])])
            where = f"{TABLE_WORDS[f[4]]} {span}"
            write_facts = [u for u in unknown if u[0] in ("modbus_write", "modbus_written_value")]
            if op.client not in self.writers():
                self.emit(
                    Finding(
                        "rogue_master_write",
                        op.ts,
                        op.client,
                        op.server,
                        f"never seen: {op.client} writing ({_fc(op.function)}) to {op.server} unit "
                        f"{op.unit}, "
                        f"{where}; this host never wrote before",
                        flow=flow,
                        app_proto="modbus",
                        facts=write_facts,
                        details=details,
                    )
                )
            else:
                known = self.baseline.ranges["modbus_write"].get(f[1:5]) or []
                self.emit(
                    Finding(
                        "new_write_range",
                        op.ts,
                        op.client,
                        op.server,
                        f"never seen: {_fc(op.function)} from {op.client} to unit {op.unit} on {op.server}, "
                        f"{where} (written before: {format_intervals(known) or 'nothing in this table'})",
                        flow=flow,
                        app_proto="modbus",
                        facts=write_facts,
                        details=details,
                    )
                )
            return
        bounds = self.baseline.bounds["modbus_written_value"]
        for f in unknown:
            if f[0] != "modbus_written_value":
                continue
            b = bounds.get(f[1:5])
            if b is None:
                continue
            word = TABLE_WORDS[f[3]].rstrip("s")
            self.emit(
                Finding(
                    "write_value_out_of_range",
                    op.ts,
                    op.client,
                    op.server,
                    f"written value {f[5]:g} to {word} {f[4]} on unit {op.unit} of {op.server} by "
                    f"{op.client} "
                    f"is outside the learned {b[0]:g}..{b[1]:g}",
                    flow=flow,
                    app_proto="modbus",
                    facts=[u for u in unknown if u[0] == "modbus_written_value"],
                    details=details,
                )
            )
            break

    # --- OPC UA --------------------------------------------------------------------------------------

    def opcua(self, msg: OpcUaMessage, facts: list[Fact], flow: FlowRef, details: dict[str, Any]) -> None:
        def describe(f: Fact) -> str:
            s = f[0]
            if s == "opcua_service":
                return f"OPC UA service {f[3]} from {f[1]} to {f[2]}"
            if s == "opcua_security":
                return f"OPC UA security mode {f[3]}, policy {f[4]} between {f[1]} and {f[2]}"
            return f"OPC UA {msg.service or msg.message_type}"

        unknown = self.check(facts, msg.ts, flow, "opcua", describe, details)
        nodes = [f for f in unknown if f[0] == "opcua_write"]
        if nodes:
            names = ", ".join(f[3] for f in nodes[:8])
            self.emit(
                Finding(
                    "new_opcua_write_node",
                    msg.ts,
                    flow.client_ip,
                    flow.server_ip,
                    f"never seen: OPC UA Write by {flow.client_ip} on {flow.server_ip} to node {names}",
                    flow=flow,
                    app_proto="opcua",
                    facts=nodes,
                    details=details,
                )
            )

    # --- MQTT ----------------------------------------------------------------------------------------

    def mqtt(self, pkt: MqttPacket, facts: list[Fact], flow: FlowRef, details: dict[str, Any]) -> None:
        def describe(f: Fact) -> str:
            s = f[0]
            if s == "mqtt_client":
                return f"MQTT client id {f[2]!r} from {f[3]} on broker {f[1]}"
            if s == "mqtt_publish":
                return f"MQTT client {f[3]!r} publishing to {f[2]!r} on {f[1]}"
            if s == "mqtt_subscribe":
                return f"MQTT client {f[3]!r} subscribing to {f[2]!r} on {f[1]}"
            if s == "mqtt_qos":
                return f"MQTT QoS {f[3]} on topic {f[2]!r} on {f[1]}"
            return f"MQTT {pkt.type_name}"

        self.check(facts, pkt.ts, flow, "mqtt", describe, details)
