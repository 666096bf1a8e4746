"""The inventory observer: turns every event into assets, identities, roles, protocol detail and edges.

It is a pipeline :class:`~sensor.pipeline.Observer` (runtime.py builds it first, before policy and the
detectors) and raises one kind of alert itself: ``anomaly:identity_conflict``, when an identity that
names one application (an OPC UA ApplicationUri, an MQTT client id) is claimed from a second IP.

Per event the work is a few dict and set operations: the asset and edge of a flow are found by key
(``Inventory.touch``, ``CommunicationGraph.edge``), facts are set insertions, register ranges a bisect.
Nothing is written per event: with a store, changes are saved in one transaction every
``batch_events`` events, every ``commit_interval`` seconds of packet time, and at the end of input.

Flow counters (packets, bytes, flows per edge) come from :class:`~sensor.records.FlowSummary` and are
absorbed once per ``flow_id`` (stable for a given capture): with a store, the summaries of a batch are
checked against ``absorbed_flows`` in one query before they are added, so a capture replayed twice or
re-run after ``kill -9`` never counts a flow twice. Everything else the inventory keeps is idempotent.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from sensor.assets.graph import CommunicationGraph, EdgeKey, EdgeStats
from sensor.assets.identity import (
    certificate_summary,
    clean_text,
    endpoint_host,
    modbus_device_identity,
    opcua_application_identity,
)
from sensor.assets.inventory import MODBUS_TABLES, Asset, IdentityConflict, Inventory, RegisterUse, asset_name
from sensor.assets.labels import AssetLabels
from sensor.assets.oui import OuiDatabase
from sensor.assets.roles import infer_roles, role_endpoints
from sensor.dissectors.modbus.events import ModbusRequest, ModbusTransaction
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish, Subscribe
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage, OpcUaTransport
from sensor.dissectors.tls.events import TlsHandshake
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import Alert, AppEvent, CertificateObservation, FlowRef, FlowSummary, stable_signature_id

log = logging.getLogger(__name__)

IDENTITY_CONFLICT_RULE: Final = "anomaly:identity_conflict"
DEFAULT_BATCH_EVENTS: Final = 20_000
DEFAULT_COMMIT_INTERVAL: Final = 30.0  # seconds of packet time (live capture)
MAX_ITEMS_PER_REQUEST: Final = 1000  # OPC UA nodes looked at per request (the dissector caps arrays too)

# Modbus function -> (table, operation) (MODBUS Application Protocol v1.1b3 §6.1-§6.16)
MODBUS_ACCESS: Final[dict[int, tuple[str, str]]] = {
    1: ("coils", "read"),
    2: ("discrete_inputs", "read"),
    3: ("holding_registers", "read"),
    4: ("input_registers", "read"),
    5: ("coils", "write"),
    15: ("coils", "write"),
    6: ("holding_registers", "write"),
    16: ("holding_registers", "write"),
    22: ("holding_registers", "write"),
}
READ_WRITE_MULTIPLE: Final = 23
_BIT_TABLES: Final = frozenset({"coils", "discrete_inputs"})
IDENTIFICATION_FCS: Final = frozenset({17, 43})  # Report Server ID, Read Device Identification

# OPC UA request field -> (node id key, operation) (OPC 10000-4 §5.10, §5.11, §5.12, §5.13)
OPCUA_NODE_FIELDS: Final[dict[str, tuple[str, str, str]]] = {
    "Read": ("nodes_to_read", "node_id", "read"),
    "Write": ("nodes_to_write", "node_id", "write"),
    "CreateMonitoredItems": ("items_to_create", "node_id", "subscribe"),
    "Call": ("methods_to_call", "method_id", "call"),
    "HistoryRead": ("nodes_to_read", "node_id", "history_read"),
    "Browse": ("nodes_to_browse", "node_id", "browse"),
}
OPCUA_ENGINEERING_SERVICES: Final = frozenset(
    {"AddNodes", "DeleteNodes", "AddReferences", "DeleteReferences"}
)


MAX_MODBUS_MEMO: Final = 100_000  # (flow, function, unit, status) whose facts are already recorded


class InventoryObserver:
    """Observer that keeps the :class:`Inventory` and :class:`CommunicationGraph` (and saves them)."""

    def __init__(
        self,
        publish: Callable[[Alert], None],
        limits: Limits = DEFAULT_LIMITS,
        store: Any | None = None,
        *,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        commit_interval: float = DEFAULT_COMMIT_INTERVAL,
        oui: OuiDatabase | None = None,
    ) -> None:
        self.publish = publish
        self.limits = limits
        self.max_chars = limits.max_field_chars
        self.inventory = Inventory(limits, oui)
        self.graph = CommunicationGraph(limits.max_graph_edges)
        self.inventory.on_evict = self.graph.remove_node
        self.store = store
        self.batch_events = max(1, batch_events)
        self.commit_interval = commit_interval
        self.identity_conflicts = 0
        self.flows_absorbed = 0
        self.flows_already_absorbed = 0
        self.deep_flows = 0
        self._events = 0
        self._next_commit_ts = 0.0
        self._flows_seen: set[int] = set()
        self._modbus_seen: set[tuple[int, int, int, str]] = set()
        # (flow, unit, id of a read request record) -> (that record, its register use, is a bit table)
        self._register_reads: dict[tuple[int, int, int], tuple[ModbusRequest, RegisterUse, bool]] = {}
        self._modbus_seen_evictions = 0
        self._pending: list[tuple[FlowSummary, EdgeKey]] = []
        self._closed = False
        # The sensor's summary counters, saved with every commit (sensor/store/summary_counters.py).
        self.summary_counters: Callable[[], dict[str, int]] | None = None
        self._handlers: dict[type, Callable[[Any], None]] = {
            ModbusTransaction: self._on_modbus,
            OpcUaMessage: self._on_opcua_message,
            OpcUaTransport: self._on_opcua_transport,
            OpcUaChannelEvent: self._on_opcua_channel,
            MqttPacket: self._on_mqtt,
            TlsHandshake: self._on_tls,
            CertificateObservation: self._on_certificate,
            FlowSummary: self._on_flow_summary,
        }
        # names and tags people gave addresses (sensor/assets/labels.py), from the store; a running
        # sensor picks up changes at its next commit (labels.revision)
        self.assigned: dict[str, AssetLabels] = {}
        self._labels_revision = -1
        if store is not None:
            self.reload_labels()
            self.inventory.track_deleted = self.graph.track_deleted = True
            self.inventory.load(store.load_assets(), store.load_macs())
            self.graph.load(store.load_edges())
            for asset in self.inventory:
                self.graph.add_node(asset.ip)
            self._evicted_before = int(store.counters().get("inventory.evicted", 0))
        else:
            self._evicted_before = 0

    @classmethod
    def open(
        cls, publish: Callable[[Alert], None], limits: Limits, db_path: Path | None, **kwargs: Any
    ) -> InventoryObserver:
        """An observer saving to the SQLite store at ``db_path`` (none when ``db_path`` is None)."""
        store = None
        if db_path is not None:
            from sensor.store.sqlite import Store

            store = Store(db_path)
        return cls(publish, limits, store, **kwargs)

    # --- the observer protocol ----------------------------------------------------------------

    def handle(self, event: AppEvent) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        handler(event)
        if self.store is not None:
            self._events += 1
            if self._events >= self.batch_events:
                self.commit()
            elif self.commit_interval and event.ts >= self._next_commit_ts:
                if self._next_commit_ts:
                    self.commit()
                self._next_commit_ts = event.ts + self.commit_interval

    def flush(self, now: float) -> None:
        """End of input (or a periodic flush of a live sensor): absorb pending flows and save."""
        if self.store is not None and not self._closed:
            self.commit()

    def close(self, now: float = 0.0) -> None:
        """Save what is left and close the store (after the deep pass has been absorbed)."""
        if self.store is not None and not self._closed:
            self.commit()
            self.store.prune_absorbed_flows()
            self.store.close()
        self._closed = True

    def commit(self) -> None:
        """Absorb the pending flow summaries not already absorbed, then save in one transaction."""
        assert self.store is not None
        absorbed: list[tuple[int, str, float]] = []
        if self._pending:
            pending, self._pending = self._pending, []
            known = self.store.known_flows([s.flow.flow_id for s, _ in pending])
            for summary, key in pending:
                flow_id = summary.flow.flow_id
                if flow_id in known:
                    self.flows_already_absorbed += 1
                    continue
                known.add(flow_id)  # the same capture given twice in one run
                edge = self._absorb(summary, key)
                absorbed.append((flow_id, edge.id, summary.end))
        run_counters = self.summary_counters() if self.summary_counters is not None else None
        self.store.save(self.inventory, self.graph, absorbed, self.counters(), run_counters)
        self._events = 0
        self.reload_labels()

    def reload_labels(self) -> bool:
        """Read the labels again when the store says they changed (one row read otherwise)."""
        assert self.store is not None
        revision = int(self.store.labels_revision())
        if revision == self._labels_revision:
            return False
        self.assigned = dict(self.store.load_labels())
        self._labels_revision = revision
        return True

    # --- common ---------------------------------------------------------------------------------

    def _endpoints(self, flow: FlowRef, protocol: str, ts: float) -> tuple[Asset, Asset, EdgeStats]:
        inventory = self.inventory
        client = inventory.touch(flow.client_ip, ts)
        server = inventory.touch(flow.server_ip, ts)
        if client.evicted:  # touching the server evicted the client (a cap of 1)
            client = inventory.touch(flow.client_ip, ts)
        edge = self.graph.edge(client.ip, server.ip, protocol, flow.server_port, flow.transport, ts)
        if flow.flow_id not in self._flows_seen:
            self._flows_seen.add(flow.flow_id)
            inventory.see_mac(client, flow.client_mac, ts)
            inventory.see_mac(server, flow.server_mac, ts)
        return client, server, edge

    def _peers(
        self,
        client: Asset,
        server: Asset,
        protocol: str,
        port: int,
        facts: str = "",
        server_noun: str = "server",
    ) -> None:
        """Both sides speak ``protocol``: the server's clients and ports, the client's servers, as facts
        named ``<facts>.clients``, ``<facts>.<server_noun>_ports``, ``<facts>.<server_noun>s`` (``facts``
        defaults to the protocol)."""
        client.protocols.add(protocol)
        server.protocols.add(protocol)
        prefix = facts or protocol
        inventory = self.inventory
        inventory.add_fact(server, f"{prefix}.clients", client.ip)
        inventory.add_fact(server, f"{prefix}.{server_noun}_ports", str(port))
        inventory.add_fact(client, f"{prefix}.{server_noun}s", server.ip)

    def _conflict(self, conflict: IdentityConflict | None, event: Any) -> None:
        if conflict is None:
            return
        self.identity_conflicts += 1
        kind = conflict.kind.replace(".", " ").replace("_", " ")
        self.publish(
            Alert(
                ts=event.ts,
                flow=event.flow,
                rule=IDENTITY_CONFLICT_RULE,
                signature=(
                    f"Identity conflict: {kind} {conflict.value!r} claimed by {conflict.ip}, "
                    f"already seen from {', '.join(conflict.others)}"
                ),
                category="anomaly",
                severity=2,
                signature_id=stable_signature_id(IDENTITY_CONFLICT_RULE),
                to_server=bool(event.to_server),
                app_proto=str(event.app_proto),
                mitre=("T0849",),  # Masquerading
                evidence={
                    "identity": conflict.kind,
                    "value": conflict.value,
                    "ip": conflict.ip,
                    "also_seen_from": list(conflict.others),
                },
            )
        )

    # --- flows ------------------------------------------------------------------------------------

    def _on_flow_summary(self, s: FlowSummary) -> None:
        flow = s.flow
        protocol = s.app_proto or flow.transport
        client, server, edge = self._endpoints(flow, protocol, s.end)
        self._flows_seen.discard(flow.flow_id)
        if s.start < client.first_seen:
            client.first_seen = s.start
        if s.start < server.first_seen:
            server.first_seen = s.start
        if s.start < edge.first_seen:
            edge.first_seen = s.start
        if s.app_proto:
            client.protocols.add(s.app_proto)
            server.protocols.add(s.app_proto)
        if self.store is None:
            self._absorb(s, edge.key)
        else:
            self._pending.append((s, edge.key))

    def _absorb(self, s: FlowSummary, key: EdgeKey) -> EdgeStats:
        edge = self.graph.get(key)
        if edge is None:  # evicted since: bring it back so the counts are not lost
            client, server, protocol, port = key
            self.inventory.touch(client, s.end)
            self.inventory.touch(server, s.end)
            edge = self.graph.edge(client, server, protocol, port, s.flow.transport, s.end)
            edge.first_seen = min(edge.first_seen, s.start)
        edge.packets += s.pkts_toserver + s.pkts_toclient
        edge.bytes += s.bytes_toserver + s.bytes_toclient
        edge.flows += 1
        self.graph.dirty.add(key)
        self.flows_absorbed += 1
        return edge

    # --- Modbus -----------------------------------------------------------------------------------

    def _on_modbus(self, t: ModbusTransaction) -> None:
        flow = t.flow
        if flow is None:
            return
        client, server, edge = self._endpoints(flow, "modbus", t.ts)
        inv = self.inventory
        fc = t.function
        # Polling repeats the same (flow, function, unit) for days: its facts are recorded once. The
        # memos are forgotten when an asset is evicted, since the evicted asset took its facts along.
        memo = self._modbus_seen
        if (
            inv.evicted != self._modbus_seen_evictions
            or len(memo) >= MAX_MODBUS_MEMO
            or len(self._register_reads) >= MAX_MODBUS_MEMO
        ):
            memo.clear()
            self._register_reads.clear()
            self._modbus_seen_evictions = inv.evicted
        if t.status == "ok" and t.request is not None and t.request.valid:
            self._register_map(t, client, server)
        seen = (flow.flow_id, fc, t.unit_id, t.status)
        device_id = t.response.device_id if t.response is not None else None
        if seen in memo and device_id is None:  # identification answers may change: always read
            return
        memo.add(seen)
        unit = str(t.unit_id)
        self._peers(client, server, "modbus", flow.server_port)
        edge.add_operation("function", str(fc))
        edge.add_operation("unit", unit)
        inv.add_fact(server, "modbus.units", unit)
        category = t.category
        if category == "read":
            inv.add_fact(client, "modbus.read_targets", f"{server.ip}/{unit}")
        elif category == "write":
            inv.add_fact(client, "modbus.write_fcs", str(fc))
        elif category == "program":
            inv.add_fact(client, "modbus.program_fcs", str(fc))
        elif category == "diagnostic":
            key = "modbus.identification_fcs" if fc in IDENTIFICATION_FCS else "modbus.diagnostic_fcs"
            inv.add_fact(client, key, str(fc))
        if device_id is not None and device_id.objects:
            for key, value in modbus_device_identity(device_id.objects).items():
                inv.set_identity(server, key, value)
            inv.set_identity(server, "modbus.device_id_unit", unit)

    def _register_map(self, t: ModbusTransaction, client: Asset, server: Asset) -> None:
        """Which addresses of which table were read or written, by whom, with what values (§6)."""
        req, resp = t.request, t.response
        assert req is not None and t.flow is not None
        resp_values = resp.values if resp is not None and resp.valid else ()
        # A poll sends the same request (one record: the dissector memoises request parses) on the same
        # flow again and again: its addresses and its reader are recorded once, only the values are new.
        key = (t.flow.flow_id, t.unit_id, id(req))
        known = self._register_reads.get(key)
        if known is not None and known[0] is req:  # (the record held there keeps its id from being reused)
            if known[2]:
                known[1].bits(resp_values)
            else:
                known[1].values(resp_values)
            return
        fc = t.function
        access = MODBUS_ACCESS.get(fc)
        if access is not None:
            table, op = access
            values = resp_values if op == "read" else req.values
            use = self._register_access(
                client, server, t.unit_id, table, op, req.address, req.quantity or 1, values
            )
            if use is not None and op == "read":  # writes carry new values: each is a new record
                self._register_reads[key] = (req, use, table in _BIT_TABLES)
        elif fc == READ_WRITE_MULTIPLE:
            self._register_access(
                client,
                server,
                t.unit_id,
                "holding_registers",
                "write",
                req.write_address,
                req.write_quantity,
                req.write_values,
            )
            self._register_access(
                client, server, t.unit_id, "holding_registers", "read", req.address, req.quantity, resp_values
            )

    def _register_access(
        self,
        client: Asset,
        server: Asset,
        unit: int,
        table: str,
        op: str,
        address: int | None,
        quantity: int | None,
        values: tuple[int, ...],
    ) -> RegisterUse | None:
        """Record the access; the table's register use, None when none was recorded."""
        if address is None or not quantity:
            return None
        use = self.inventory.register_use(server, unit, table)
        if use is None:
            return None
        end = min(address + quantity - 1, 0xFFFF)
        if op == "read":
            use.read.add(address, end)
            readers = use.readers
            if client.ip not in readers and len(readers) < self.limits.max_asset_detail:
                readers.add(client.ip)
        else:
            use.written.add(address, end)
            writers = use.writers
            if client.ip not in writers and len(writers) < self.limits.max_asset_detail:
                writers.add(client.ip)
        if table in _BIT_TABLES:
            use.bits(values)  # coils and discrete inputs are bools (ModbusRequest.values)
        else:
            use.values(values)
        return use

    # --- OPC UA -----------------------------------------------------------------------------------

    def _ua_sides(self, event: Any) -> tuple[Asset, Asset, EdgeStats]:
        client, server, edge = self._endpoints(event.flow, "opcua", event.ts)
        client.protocols.add("opcua")
        server.protocols.add("opcua")
        if getattr(event, "reverse_connect", False):
            return server, client, edge  # OPC 10000-6 §7.1.3: the server opened the connection
        return client, server, edge

    def _on_opcua_transport(self, m: OpcUaTransport) -> None:
        if m.flow is None:
            return
        _ua_client, ua_server, _edge = self._ua_sides(m)
        url = m.fields.get("endpoint_url")
        if m.message_type == "HEL" and isinstance(url, str) and url:
            self.inventory.add_fact(ua_server, "opcua.endpoint_urls", clean_text(url, self.max_chars))

    def _on_opcua_channel(self, m: OpcUaChannelEvent) -> None:
        if m.flow is None or m.kind != "mode" or not m.security_mode:
            return
        _ua_client, ua_server, _edge = self._ua_sides(m)
        self.inventory.add_fact(ua_server, "opcua.security_modes", clean_text(m.security_mode, 32))

    def _on_opcua_message(self, m: OpcUaMessage) -> None:
        flow = m.flow
        if flow is None:
            return
        ua_client, ua_server, edge = self._ua_sides(m)
        inv = self.inventory
        service = m.service
        if service:
            edge.add_operation("service", clean_text(service, 64))
        self._peers(
            ua_client, ua_server, "opcua", flow.client_port if m.reverse_connect else flow.server_port
        )
        request = m.request if isinstance(m.request, dict) else {}
        response = m.response if isinstance(m.response, dict) else {}
        if service == "CreateSession":
            for key, value in opcua_application_identity(request.get("client_description")).items():
                self._conflict(inv.set_identity(ua_client, key, value), m)
            for endpoint in _dicts(response.get("server_endpoints")):
                self._server_description(endpoint, ua_server, m, require_host=False)
                break
        elif service == "GetEndpoints":
            for endpoint in _dicts(response.get("endpoints")):
                if self._server_description(endpoint, ua_server, m, require_host=True):
                    break
        elif service in OPCUA_ENGINEERING_SERVICES:
            inv.add_fact(ua_client, "opcua.engineering_services", service)
        nodes = OPCUA_NODE_FIELDS.get(service)
        if nodes is not None:
            list_key, id_key, op = nodes
            for item in _dicts(request.get(list_key), MAX_ITEMS_PER_REQUEST):
                node_id = item.get(id_key)
                if isinstance(node_id, str) and node_id:
                    inv.add_node_use(ua_server, node_id, op, ua_client.ip)

    def _server_description(
        self, endpoint: dict[str, Any], server: Asset, event: Any, require_host: bool
    ) -> bool:
        """Take an EndpointDescription's ApplicationDescription as the server's identity; with
        ``require_host``, only when the endpoint URL names this server (a discovery server lists others)."""
        url = endpoint.get("endpoint_url")
        if require_host and isinstance(url, str):
            host = endpoint_host(url)
            try:
                if ipaddress.ip_address(host) != ipaddress.ip_address(server.ip):
                    return False
            except ValueError:
                pass  # a host name: cannot be checked passively, taken as the server's own
        identity = opcua_application_identity(endpoint.get("server"))
        for key, value in identity.items():
            self._conflict(self.inventory.set_identity(server, key, value), event)
        if isinstance(url, str) and url:
            self.inventory.add_fact(server, "opcua.endpoint_urls", clean_text(url, self.max_chars))
        return bool(identity)

    # --- MQTT -------------------------------------------------------------------------------------

    def _on_mqtt(self, p: MqttPacket) -> None:
        flow = p.flow
        if flow is None:
            return
        client, broker, edge = self._endpoints(flow, "mqtt", p.ts)
        inv = self.inventory
        self._peers(client, broker, "mqtt", flow.server_port, server_noun="broker")
        msg = p.message
        if isinstance(msg, Publish):
            topic = clean_text(msg.topic or p.topic, self.max_chars)
            if not topic:
                return
            if p.to_server:
                inv.add_fact(client, "mqtt.published", topic)
                inv.add_topic_use(broker, topic, "publishers", client.ip)
                edge.add_operation("publish", topic)
            else:
                inv.add_topic_use(broker, topic, "receivers", client.ip)
                edge.add_operation("receive", topic)
        elif isinstance(msg, Subscribe) and p.to_server:
            for sub in msg.subscriptions[:MAX_ITEMS_PER_REQUEST]:
                topic_filter = clean_text(sub.topic_filter, self.max_chars)
                inv.add_fact(client, "mqtt.subscribed", topic_filter)
                inv.add_topic_use(broker, topic_filter, "subscribers", client.ip)
                edge.add_operation("subscribe", topic_filter)
        elif isinstance(msg, Connect) and p.to_server and msg.client_id:
            self._conflict(inv.add_identity_value(client, "mqtt.client_id", msg.client_id), p)

    # --- TLS and certificates ---------------------------------------------------------------------

    def _on_tls(self, h: TlsHandshake) -> None:
        flow = h.flow
        if flow is None:
            return
        client, server, _edge = self._endpoints(flow, "tls", h.ts)
        inv = self.inventory
        self._peers(client, server, "tls", flow.server_port)
        if h.message == "client_hello" and h.sni:
            inv.set_identity(server, "tls.sni", h.sni)
            inv.add_fact(server, "tls.sni_names", clean_text(h.sni, self.max_chars))

    def _on_certificate(self, c: CertificateObservation) -> None:
        flow = c.flow
        if flow is None or c.chain_index != 0:
            return
        client, server, _edge = self._endpoints(flow, c.app_proto or "tls", c.ts)
        presenter = server if c.presenter_is_server else client
        cert = c.cert
        if self.inventory.add_certificate(presenter, cert.sha256, certificate_summary(cert, c.source)):
            self.inventory.set_identity(presenter, "certificate.subject", cert.subject)
            if cert.san_uris:
                self.inventory.set_identity(presenter, "certificate.san_uri", cert.san_uris[0])
            if cert.san_dns:
                self.inventory.set_identity(presenter, "certificate.san_dns", cert.san_dns[0])

    # --- tshark-identified protocols (--deep) -----------------------------------------------------

    def absorb_other_protocols(self, flows: Iterable[Any]) -> None:
        """Flows of protocols identified by tshark (``sensor.deep.OtherProtocolFlow``), after the native
        pass: the native flow edge (``tcp``/``udp`` + port) is renamed after the protocol, and Wireshark's
        identity fields are given to the server side."""
        inv, graph = self.inventory, self.graph
        for f in flows:
            if f.transport not in ("tcp", "udp"):
                continue  # Ethernet-only protocols (PROFINET RT, GOOSE): no IP asset to give them to
            self.deep_flows += 1
            protocol = clean_text(f.protocol, 64)
            client = inv.touch(f.client_ip, f.last_ts)
            server = inv.touch(f.server_ip, f.last_ts)
            client.first_seen = min(client.first_seen, f.first_ts)
            server.first_seen = min(server.first_seen, f.first_ts)
            edge = graph.edge(client.ip, server.ip, protocol, f.server_port, f.transport, f.last_ts)
            edge.first_seen = min(edge.first_seen, f.first_ts)
            native = graph.remove_edge((client.ip, server.ip, f.transport, f.server_port))
            if native is not None:  # move the counts the native pass absorbed onto the named edge
                edge.packets += native.packets
                edge.bytes += native.bytes
                edge.flows += native.flows
                edge.first_seen = min(edge.first_seen, native.first_seen)
                edge.last_seen = max(edge.last_seen, native.last_seen)
            self._peers(client, server, protocol, f.server_port, facts=f"other.{protocol}")
            for key, value in sorted(f.identity.items()):
                inv.set_identity(server, f"{protocol}.{clean_text(key, 64)}", value)

    # --- the summary ------------------------------------------------------------------------------

    def labels(self, ip: str) -> set[str]:
        """What a policy may call the asset at ``ip`` (zones by ``{asset: NAME}`` or ``{tag: TAG}``).

        The name and tags people gave the address (from the store, so they hold from its first
        packet, even before the inventory has seen it), its inferred name and every identity value it
        announced (ApplicationUri, product, MQTT client id), the roles the inventory inferred
        (``modbus_server``, ``hmi_scada``, ...) and its vendor.
        """
        given = self.assigned.get(ip)
        asset = self.inventory.get(ip)
        if asset is None:
            return given.values() if given is not None else set()
        out = {value for value in asset.identity.values() if value}
        if given is not None:
            out.update(given.values())
        out.update(asset.fact("mqtt.client_id"))
        out.update(infer_roles(asset))
        name = asset_name(asset)
        if name:
            out.add(name)
        vendor = self.inventory.vendor(asset)
        if vendor:
            out.add(vendor)
        return out

    def roles(self) -> dict[str, list[str]]:
        """Role -> the assets holding it (IP, or IP:port for a server on a non-standard port)."""
        out: dict[str, set[str]] = {}
        for asset in self.inventory:
            for role in infer_roles(asset):
                out.setdefault(role, set()).update(role_endpoints(asset, role))
        return {role: sorted(members, key=_ip_sort) for role, members in sorted(out.items())}

    def counters(self) -> dict[str, int]:
        return {
            "inventory.evicted": self._evicted_before + self.inventory.evicted,
            "graph.edges_evicted": self.graph.edges_evicted,
        }

    def section(self) -> dict[str, Any]:
        """The ``inventory`` block of the replay summary."""
        return {
            "assets": len(self.inventory),
            "edges": len(self.graph),
            "evicted": self.inventory.evicted,
            "edges_evicted": self.graph.edges_evicted,
            "detail_dropped": self.inventory.detail_dropped,
            "router_macs": sorted(m.mac for m in self.inventory.macs.values() if m.is_router),
            "identity_conflicts": self.identity_conflicts,
            "flows_absorbed": self.flows_absorbed,
            "flows_already_absorbed": self.flows_already_absorbed,
            "deep_flows": self.deep_flows,
            "store": None if self.store is None else str(self.store.path),
            "store_commits": 0 if self.store is None else self.store.commits,
            "labelled_addresses": len(self.assigned),
        }


def _dicts(value: Any, limit: int = 64) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [v for v in value[:limit] if isinstance(v, dict)]


def _ip_sort(text: str) -> tuple[int, Any, str]:
    host = text
    if text.startswith("["):
        host = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        host = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return (2, 0, text)
    return (addr.version, int(addr), text)


__all__ = ["IDENTITY_CONFLICT_RULE", "MODBUS_TABLES", "InventoryObserver"]
