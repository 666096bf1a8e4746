"""Impairment and control: operations that change how a device runs or what it does.

Modbus (MODBUS Application Protocol v1.1b3 §6.8.1, Annex A; ANCHORS.md §1 item 15): FC 8
sub-function 1 Restart Communications Option, 4 Force Listen Only Mode (the device stops answering
until restarted), 10 Clear Counters and Diagnostic Register; program and firmware codes (90 Unity,
125 firmware replacement, 126 Modicon programming and the other reserved programming codes); write
bursts and exception storms, judged against the peak rate learned per (client, server).

OPC UA (OPC 10000-4 §5.11 Call, §5.7 NodeManagement): Call of a method the pair never called;
AddNodes, AddReferences, DeleteNodes, DeleteReferences.

MQTT: a PUBLISH to a command topic (a level such as ``cmd``, ``set``, ``control``) from a client that
never published there; a retained message overwritten by a client that never retained on that topic
(subscribers get the new value on connect, MQTT 3.1.1 §3.3.1.3); a client id connecting from a host
it never used, or while it is connected from another host (the broker drops the older session,
MQTT 3.1.1 §3.1.4).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from sensor.detect.baseline import Baseline
from sensor.detect.findings import Finding
from sensor.detect.learn import ModbusOp, mqtt_client_name
from sensor.detect.novelty import Emit
from sensor.detect.window import RateWindow
from sensor.dissectors.modbus import codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.records import FlowRef

BURST_WINDOW: Final = 5.0  # seconds for write bursts and exception storms
MIN_WRITE_BURST: Final = 10
MIN_EXCEPTION_STORM: Final = 10
BURST_FACTOR: Final = 3.0  # times the learned peak per window

_DIAGNOSTIC_KINDS: Final[dict[int, str]] = {
    1: "modbus_restart_communications",
    codes.FORCE_LISTEN_ONLY_MODE: "modbus_force_listen_only",
    0x0A: "modbus_clear_counters",
}
_NODE_MANAGEMENT: Final = frozenset({"AddNodes", "AddReferences", "DeleteNodes", "DeleteReferences"})
COMMAND_WORDS: Final = frozenset(
    {
        "cmd",
        "cmnd",
        "command",
        "commands",
        "set",
        "setpoint",
        "setpoints",
        "control",
        "ctrl",
        "write",
        "actuator",
        "actuators",
        "action",
        "actions",
    }
)
MAX_CLIENT_IDS: Final = 65536


def is_command_topic(topic: str) -> bool:
    return any(level.lower() in COMMAND_WORDS for level in topic.split("/"))


class ImpairmentDetector:
    def __init__(self, baseline: Baseline, emit: Emit) -> None:
        self.baseline = baseline
        self.emit = emit
        self.writes: RateWindow[tuple[str, str]] = RateWindow(BURST_WINDOW)
        self.exceptions: RateWindow[tuple[str, str]] = RateWindow(BURST_WINDOW)
        self._retainers: dict[tuple[str, str], set[str]] | None = None
        self._client_hosts: dict[tuple[str, str], set[str]] | None = None
        self.connected: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()

    def baseline_changed(self) -> None:
        self._retainers = None
        self._client_hosts = None

    def _finding(
        self, kind: str, ts: float, src: str, dst: str, text: str, flow: FlowRef, proto: str, **kw: Any
    ) -> Finding:
        facts = kw.pop("facts", None) or [("allow", kind, src, dst)]
        return Finding(kind, ts, src, dst, text, flow=flow, app_proto=proto, facts=facts, **kw)

    # --- Modbus ----------------------------------------------------------------------------------

    def modbus(self, op: ModbusOp, flow: FlowRef, details: dict[str, Any]) -> None:
        c, s, u, fc = op.client, op.server, op.unit, op.function
        allows = self.baseline.allows
        if op.status == "unsolicited":
            return
        if fc == codes.DIAGNOSTICS and op.subfunction in _DIAGNOSTIC_KINDS:
            kind = _DIAGNOSTIC_KINDS[op.subfunction]
            if not allows(kind, c, s):
                self.emit(
                    self._finding(
                        kind,
                        op.ts,
                        c,
                        s,
                        f"Modbus FC 8 sub-function {op.subfunction} "
                        f"({codes.subfunction_name(op.subfunction)}) "
                        f"from {c} to {s} unit {u}",
                        flow,
                        "modbus",
                        details=details,
                    )
                )
        if codes.category(fc) == "program":
            kind = (
                "modbus_firmware_function" if fc == codes.FIRMWARE_REPLACEMENT else "modbus_program_function"
            )
            if not allows(kind, c, s):
                self.emit(
                    self._finding(
                        kind,
                        op.ts,
                        c,
                        s,
                        f"Modbus FC {fc} ({codes.function_name(fc)}) from {c} to {s} unit {u}: "
                        "reprograms the device",
                        flow,
                        "modbus",
                        details=details,
                    )
                )
        if op.writes:
            n = self.writes.add((c, s), op.ts)
            peak = self.baseline.peaks.get(("writes", c, s), 0.0)
            threshold = max(MIN_WRITE_BURST, int(BURST_FACTOR * peak) + 1)
            if n >= threshold and not allows("modbus_write_burst", c, s):
                self.emit(
                    self._finding(
                        "modbus_write_burst",
                        op.ts,
                        c,
                        s,
                        f"Modbus write burst: {n} writes from {c} to {s} within {BURST_WINDOW:g} s "
                        f"(learned peak {peak:g})",
                        flow,
                        "modbus",
                        details=details,
                        count=n if n == threshold else 1,
                    )
                )
        if op.status == "exception":
            n = self.exceptions.add((c, s), op.ts)
            peak = self.baseline.peaks.get(("exceptions", c, s), 0.0)
            threshold = max(MIN_EXCEPTION_STORM, int(BURST_FACTOR * peak) + 1)
            if n >= threshold and not allows("modbus_exception_storm", c, s):
                self.emit(
                    self._finding(
                        "modbus_exception_storm",
                        op.ts,
                        c,
                        s,
                        f"Modbus exception storm: {s} answered {n} requests from {c} with "
                        "exceptions within "
                        ""
                        f"{BURST_WINDOW:g} s (learned peak {peak:g}; last "
                        f"{codes.exception_name(op.exception_code or 0)})",
                        flow,
                        "modbus",
                        details=details,
                        count=n if n == threshold else 1,
                    )
                )

    # --- OPC UA ------------------------------------------------------------------------------------

    def opcua(self, msg: OpcUaMessage, flow: FlowRef, details: dict[str, Any]) -> None:
        if msg.request is None:
            return
        c, s = flow.client_ip, flow.server_ip
        if msg.service == "Call":
            for item in msg.request.get("methods_to_call") or ():
                if not isinstance(item, dict) or "method_id" not in item:
                    continue
                method = str(item["method_id"])
                fact = ("opcua_call", c, s, method)
                if self.baseline.knows(fact):
                    continue
                self.emit(
                    self._finding(
                        "opcua_unexpected_call",
                        msg.ts,
                        c,
                        s,
                        f"OPC UA Call of method {method} on object {item.get('object_id')} by {c} on {s}: "
                        "never called by this client",
                        flow,
                        "opcua",
                        facts=[fact],
                        details=details,
                    )
                )
        elif msg.service in _NODE_MANAGEMENT and not self.baseline.allows("opcua_address_space_change", c, s):
            self.emit(
                self._finding(
                    "opcua_address_space_change",
                    msg.ts,
                    c,
                    s,
                    f"OPC UA {msg.service} by {c} on {s}: changes the server's address space",
                    flow,
                    "opcua",
                    details=details,
                )
            )

    # --- MQTT --------------------------------------------------------------------------------------

    def _index(self) -> None:
        retainers: dict[tuple[str, str], set[str]] = {}
        for _, broker, topic, client in self.baseline.sets["mqtt_retain"]:
            retainers.setdefault((broker, topic), set()).add(client)
        hosts: dict[tuple[str, str], set[str]] = {}
        for _, broker, client_id, ip in self.baseline.sets["mqtt_client"]:
            hosts.setdefault((broker, client_id), set()).add(ip)
        self._retainers, self._client_hosts = retainers, hosts

    def mqtt(self, pkt: MqttPacket, flow: FlowRef, details: dict[str, Any]) -> None:
        m = pkt.message
        if not pkt.to_server or m is None:
            return
        if self._retainers is None or self._client_hosts is None:
            self._index()
        assert self._retainers is not None and self._client_hosts is not None
        c, broker = flow.client_ip, flow.server_ip
        name = mqtt_client_name(pkt, flow)
        knows = self.baseline.knows
        if isinstance(m, Publish) and m.topic:
            if is_command_topic(m.topic) and not knows(("mqtt_publish", broker, m.topic, name)):
                self.emit(
                    self._finding(
                        "mqtt_command_from_new_client",
                        pkt.ts,
                        c,
                        broker,
                        f"MQTT client {name!r} ({c}) published to command topic {m.topic!r} on {broker}: "
                        "never published there before",
                        flow,
                        "mqtt",
                        facts=[("mqtt_publish", broker, m.topic, name)],
                        details=details,
                    )
                )
            known = self._retainers.get((broker, m.topic))
            if m.retain and m.payload_size and known and name not in known:
                self.emit(
                    self._finding(
                        "mqtt_retained_overwrite",
                        pkt.ts,
                        c,
                        broker,
                        f"MQTT retained message on {m.topic!r} overwritten by {name!r} ({c}); "
                        "learned retained "
                        f"publishers: {', '.join(sorted(known))}",
                        flow,
                        "mqtt",
                        facts=[("mqtt_retain", broker, m.topic, name)],
                        details=details,
                    )
                )
        elif isinstance(m, Connect) and m.client_id:
            cid = m.client_id
            hosts = self._client_hosts.get((broker, cid))
            other = self.connected.get((broker, cid))
            reason = ""
            if hosts and c not in hosts:
                reason = f"learned from {', '.join(sorted(hosts))}"
            elif other is not None and other[0] != c and other[1] != flow.flow_id:
                reason = f"while connected from {other[0]}"
            self.connected[(broker, cid)] = (c, flow.flow_id)
            while len(self.connected) > MAX_CLIENT_IDS:
                self.connected.popitem(last=False)
            if reason:
                self.emit(
                    self._finding(
                        "mqtt_client_id_takeover",
                        pkt.ts,
                        c,
                        broker,
                        f"MQTT client id {cid!r} connected from {c} to {broker} ({reason})",
                        flow,
                        "mqtt",
                        facts=[("mqtt_client", broker, cid, c)],
                        details=details,
                    )
                )
