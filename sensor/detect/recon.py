"""Reconnaissance: scans and sweeps, judged in sliding windows of packet time.

Each detector counts *distinct never-seen* probes per source within ``RECON_WINDOW`` seconds, so
a master that polls the same 50 registers forever never looks like a sweep, while a scanner that
walks unit ids 1..247 crosses the threshold within a handful of requests:

========================  ==================================  ==========================  =========
kind                      key                                 item (unknown to baseline)  threshold
========================  ==================================  ==========================  =========
modbus_unit_id_scan       client, server                      unit id                     5
modbus_function_code_scan client, server                      function code (any unit)    5
modbus_device_id_sweep    client                              (server, unit) read by FC43 3
modbus_address_sweep      client, server, unit                (table, first address)      8
opcua_browse_sweep        client, server                      node browsed                25
tcp_port_scan             source                              (destination, port)         10
mqtt_topic_sweep          client, broker                      topic / filter              10
mqtt_wildcard_subscription  a filter whose levels before ``#`` are all ``+`` (``#``, ``+/#``), once
========================  ==================================  ==========================  =========

When the threshold is crossed one finding counts all probes so far; each later distinct probe adds
one, so the aggregated alert's count is the number of distinct probes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final

from sensor.detect.baseline import Baseline
from sensor.detect.findings import Finding
from sensor.detect.learn import TABLE_WORDS, ModbusOp, flow_is_probe, mqtt_client_name
from sensor.detect.novelty import Emit
from sensor.detect.window import DistinctWindow
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Publish, Subscribe
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.records import FlowRef, FlowSummary

RECON_WINDOW: Final = 60.0
THRESHOLDS: Final[dict[str, int]] = {
    "modbus_unit_id_scan": 5,
    "modbus_function_code_scan": 5,
    "modbus_device_id_sweep": 3,
    "modbus_address_sweep": 8,
    "opcua_browse_sweep": 25,
    "tcp_port_scan": 10,
    "mqtt_topic_sweep": 10,
}


def is_wildcard_everything(topic_filter: str) -> bool:
    """``#``, ``+/#``, ``+/+/#``, ``$SYS/#``...: a filter that matches whole trees (MQTT 3.1.1 §4.7)."""
    levels = topic_filter.split("/")
    if levels[-1] != "#":
        return False
    head = levels[:-1]
    return all(level in ("+", "") for level in head) or head == ["$SYS"]


class ReconDetector:
    def __init__(self, baseline: Baseline, emit: Emit, window: float = RECON_WINDOW) -> None:
        self.baseline = baseline
        self.emit = emit
        self.windows: dict[str, DistinctWindow[Hashable]] = {k: DistinctWindow(window) for k in THRESHOLDS}
        self._units: dict[str, set[int]] | None = None
        self._functions: dict[tuple[str, str], set[int]] | None = None

    def baseline_changed(self) -> None:
        self._units = None
        self._functions = None

    def functions_of(self, client: str, server: str) -> set[int]:
        """Function codes the pair used with any unit (a unit-id scan with FC 3 is not an FC scan)."""
        if self._functions is None:
            functions: dict[tuple[str, str], set[int]] = {}
            for _, c, s, _u, fc in self.baseline.sets["modbus_function"]:
                functions.setdefault((c, s), set()).add(fc)
            self._functions = functions
        return self._functions.get((client, server), set())

    def units_of(self, server: str) -> set[int]:
        if self._units is None:
            units: dict[str, set[int]] = {}
            for _, _c, s, u in self.baseline.sets["modbus_unit"]:
                units.setdefault(s, set()).add(u)
            self._units = units
        return self._units.get(server, set())

    def _probe(
        self,
        kind: str,
        key: Hashable,
        item: Hashable,
        ts: float,
        src: str,
        dst: str,
        flow: FlowRef | None,
        app_proto: str,
        describe: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        window = self.windows[kind]
        n = window.add(key, item, ts)
        threshold = THRESHOLDS[kind]
        if n < threshold:
            return
        items = window.items(key) if n == threshold else [item]
        self.emit(
            Finding(
                kind,
                ts,
                src,
                dst,
                describe,
                flow=flow,
                app_proto=app_proto,
                facts=[("allow", kind, src, dst)],
                details=details or {},
                count=len(items),
                items=[_jsonable(i) for i in items],
            )
        )

    # --- Modbus ----------------------------------------------------------------------------------

    def modbus(self, op: ModbusOp, flow: FlowRef) -> None:
        c, s, u, fc = op.client, op.server, op.unit, op.function
        if op.status == "unsolicited":
            return
        knows = self.baseline.knows
        window = f"{RECON_WINDOW:g} s"
        if u not in self.units_of(s):
            self._probe(
                "modbus_unit_id_scan",
                (c, s),
                u,
                op.ts,
                c,
                s,
                flow,
                "modbus",
                f"Modbus unit-id scan: {c} addressed {THRESHOLDS['modbus_unit_id_scan']} or more never-seen "
                f"unit ids on {s} within {window}",
            )
        if fc not in self.functions_of(c, s):
            self._probe(
                "modbus_function_code_scan",
                (c, s),
                fc,
                op.ts,
                c,
                s,
                flow,
                "modbus",
                f"Modbus function-code scan: {c} sent {THRESHOLDS['modbus_function_code_scan']} or more "
                f"never-seen function codes to {s} within {window}",
            )
        if op.device_id and not knows(("modbus_function", c, s, u, fc)):
            self._probe(
                "modbus_device_id_sweep",
                c,
                (s, u),
                op.ts,
                c,
                s,
                flow,
                "modbus",
                f"Modbus device-identification sweep: {c} read device identification (FC 43/14) of "
                f"{THRESHOLDS['modbus_device_id_sweep']} or more units/servers it never queried before",
            )
        for table, first, last in op.reads:
            if not knows(("modbus_read", c, s, u, table, first, last)):
                self._probe(
                    "modbus_address_sweep",
                    (c, s, u),
                    (table, first),
                    op.ts,
                    c,
                    s,
                    flow,
                    "modbus",
                    f"Modbus address sweep: {c} read {THRESHOLDS['modbus_address_sweep']} or more never-read "
                    f"{TABLE_WORDS[table]} ranges of {s} unit {u} within {window}",
                )

    # --- OPC UA ------------------------------------------------------------------------------------

    def opcua(self, msg: OpcUaMessage, flow: FlowRef) -> None:
        if msg.service not in ("Browse", "BrowseNext") or msg.request is None:
            return
        c, s = flow.client_ip, flow.server_ip
        nodes = msg.request.get("nodes_to_browse") or []
        for node in nodes:
            node_id = node.get("node_id") if isinstance(node, dict) else None
            if node_id is None:
                continue
            self._probe(
                "opcua_browse_sweep",
                (c, s),
                str(node_id),
                msg.ts,
                c,
                s,
                flow,
                "opcua",
                f"OPC UA browse sweep: {c} browsed {THRESHOLDS['opcua_browse_sweep']} or more nodes of {s} "
                f"within {RECON_WINDOW:g} s",
            )

    # --- flows -------------------------------------------------------------------------------------

    def flow(self, fs: FlowSummary) -> None:
        if not flow_is_probe(fs):
            return
        f = fs.flow
        proto = f"tcp/{f.server_port}"
        if self.baseline.knows(("edge", f.client_ip, f.server_ip, proto)):
            return
        self._probe(
            "tcp_port_scan",
            f.client_ip,
            (f.server_ip, f.server_port),
            fs.start,
            f.client_ip,
            f.server_ip,
            f,
            "",
            f"TCP port scan: {f.client_ip} tried {THRESHOLDS['tcp_port_scan']} or more never-used ports "
            f"(connection refused or unanswered) within {RECON_WINDOW:g} s, e.g. "
            f"{f.server_ip}:{f.server_port}",
        )

    # --- MQTT --------------------------------------------------------------------------------------

    def mqtt(self, pkt: MqttPacket, flow: FlowRef) -> None:
        m = pkt.message
        if not pkt.to_server or m is None:
            return
        c, broker = flow.client_ip, flow.server_ip
        name = mqtt_client_name(pkt, flow)
        knows = self.baseline.knows
        topics: list[str] = []
        if isinstance(m, Subscribe):
            for sub in m.subscriptions:
                f = sub.topic_filter
                if knows(("mqtt_subscribe", broker, f, name)):
                    continue
                topics.append(f)
                if is_wildcard_everything(f):
                    self.emit(
                        Finding(
                            "mqtt_wildcard_subscription",
                            pkt.ts,
                            c,
                            broker,
                            f"MQTT client {name!r} ({c}) subscribed to {f!r} on {broker}: every topic "
                            "below it, never seen from this client",
                            flow=flow,
                            app_proto="mqtt",
                            facts=[("mqtt_subscribe", broker, f, name)],
                            details={"client_id": name, "filter": f, "qos": sub.qos},
                        )
                    )
        elif isinstance(m, Publish) and m.topic and not knows(("mqtt_publish", broker, m.topic, name)):
            topics.append(m.topic)
        for topic in topics:
            self._probe(
                "mqtt_topic_sweep",
                (c, broker),
                topic,
                pkt.ts,
                c,
                broker,
                flow,
                "mqtt",
                f"MQTT topic sweep: client {name!r} ({c}) used {THRESHOLDS['mqtt_topic_sweep']} or more "
                f"never-seen topics on {broker} within {RECON_WINDOW:g} s",
            )


def _jsonable(item: Hashable) -> Any:
    return list(item) if isinstance(item, tuple) else item
