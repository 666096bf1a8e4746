"""Inventory: intervals, MACs behind routers, identity conflicts and the caps (hostile inputs G1, G2)."""

from __future__ import annotations

import json
from pathlib import Path

from sensor.assets.identity import clean_text
from sensor.assets.inventory import MAX_INTERVALS, ROUTER_MIN_IPS, IntervalSet, Inventory
from sensor.assets.observer import IDENTITY_CONFLICT_RULE, InventoryObserver
from sensor.assets.oui import OuiDatabase
from sensor.dissectors.modbus.events import (
    DeviceIdentification,
    ModbusRequest,
    ModbusResponse,
    ModbusTransaction,
)
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.limits import Limits
from sensor.records import Alert, FlowRef, FlowSummary
from sensor.store.sqlite import Store

NO_OUI = OuiDatabase(Path("/nonexistent/manuf"))


def flow(client: str, server: str, port: int = 502, flow_id: int = 1, client_mac: str = "") -> FlowRef:
    return FlowRef(flow_id, "1:x", "tcp", client, 40000, server, port, client_mac, "00:90:e8:00:00:01")


def summary(f: FlowRef, ts: float = 100.0, app: str = "modbus") -> FlowSummary:
    return FlowSummary(f, ts, ts + 1, 5, 4, 500, 400, "closed", "fin", app)


def test_interval_set_merges_overlapping_and_adjacent_ranges() -> None:
    s = IntervalSet()
    assert s.add(0, 9)
    assert not s.add(0, 9)
    assert not s.add(2, 5)
    assert s.add(10, 19)  # adjacent: merged
    assert s.add(30, 39)
    assert s.spans == [[0, 19], [30, 39]]
    assert s.add(15, 35)
    assert s.spans == [[0, 39]]
    assert s.as_text() == ["0-39"]


def test_interval_set_is_bounded_by_merging_closest_neighbours() -> None:
    s = IntervalSet()
    for i in range(MAX_INTERVALS * 3):
        s.add(i * 10, i * 10)
    assert len(s.spans) <= MAX_INTERVALS
    assert s.spans[0][0] == 0 and s.spans[-1][1] == (MAX_INTERVALS * 3 - 1) * 10


def test_mac_behind_many_ips_is_a_router_not_a_merged_asset() -> None:
    inv = Inventory(oui=NO_OUI)
    for i in range(ROUTER_MIN_IPS):
        inv.see_mac(inv.touch(f"10.9.0.{i}", 1.0), "00:90:e8:11:22:33", 1.0)
    assert len(inv) == ROUTER_MIN_IPS
    assert inv.macs["00:90:e8:11:22:33"].is_router
    asset = inv.get("10.9.0.0")
    assert asset is not None
    assert inv.behind_router(asset) == "00:90:e8:11:22:33"
    assert inv.vendor(asset) == ""  # the router's vendor is not the host's


def test_mac_behind_few_ips_keeps_its_vendor(tmp_path: Path) -> None:
    manuf = tmp_path / "manuf"
    manuf.write_text("00:90:E8\tMoxaTech\tMoxa Technologies Corp., Ltd.\n")
    inv = Inventory(oui=OuiDatabase(manuf))
    asset = inv.touch("10.9.0.1", 1.0)
    inv.see_mac(asset, "00:90:e8:11:22:33", 1.0)
    assert inv.vendor(asset) == "Moxa Technologies Corp., Ltd."
    assert not inv.behind_router(asset)


def test_identity_conflict_publishes_one_anomaly_alert() -> None:
    alerts: list[Alert] = []
    obs = InventoryObserver(alerts.append, oui=NO_OUI)
    description = {"application_uri": "urn:plant:plc1", "application_name": "PLC 1"}

    def create_session(client: str, flow_id: int) -> OpcUaMessage:
        return OpcUaMessage(
            ts=10.0 + flow_id,
            flow=flow(client, "10.0.0.100", 4840, flow_id),
            to_server=True,
            message_type="MSG",
            secure_channel_id=1,
            request_id=1,
            service="CreateSession",
            request_type_id=461,
            response_type_id=464,
            request_handle=1,
            status="Good",
            security_policy="",
            security_mode="None",
            request={"client_description": description},
            response=None,
            chunks=(),
        )

    obs.handle(create_session("10.0.0.1", 1))
    obs.handle(create_session("10.0.0.1", 2))  # same IP again: no conflict
    assert alerts == []
    obs.handle(create_session("10.0.0.2", 3))
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.rule == IDENTITY_CONFLICT_RULE and alert.category == "anomaly"
    assert alert.evidence["value"] == "urn:plant:plc1"
    assert alert.evidence["also_seen_from"] == ["10.0.0.1"]
    obs.handle(create_session("10.0.0.2", 4))
    assert len(alerts) == 1


def test_G1_spoofed_pairs_keep_inventory_under_cap_and_graph_queryable() -> None:
    limits = Limits(max_assets=1000, max_graph_edges=2000)
    obs = InventoryObserver(lambda a: None, limits, oui=NO_OUI)
    for i in range(50_000):  # 1 M spoofed MAC/IP pairs in the hostile-input table, scaled down
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        mac = f"00:16:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:01"
        obs.handle(summary(flow(ip, "192.168.1.10", 502, i + 1, mac), ts=1000.0 + i, app=""))
    assert len(obs.inventory) <= 1000
    assert len(obs.inventory.macs) <= 1000
    assert len(obs.graph) <= 2000
    assert obs.inventory.evicted >= 49_000
    assert obs.section()["evicted"] == obs.inventory.evicted
    # the server, seen in every flow, is never aged out; the graph still answers
    assert obs.inventory.get("192.168.1.10") is not None
    neighbours = obs.graph.neighbours("192.168.1.10")
    assert 0 < len(neighbours) < 1000
    last = "10.0.195.79"  # i = 49_999
    assert last in neighbours
    assert obs.graph.paths(last, "192.168.1.10").paths == ((last, "192.168.1.10"),)
    assert obs.graph.neighbours("10.0.0.0") == set()  # evicted long ago
    assert not obs.inventory.deleted and not obs.graph.deleted  # no store: nothing remembered


def test_G1_store_mirrors_the_capped_inventory(tmp_path: Path) -> None:
    limits = Limits(max_assets=200)
    obs = InventoryObserver(lambda a: None, limits, Store(tmp_path / "z.db"), batch_events=500, oui=NO_OUI)
    for i in range(5000):
        obs.handle(summary(flow(f"10.7.{i >> 8}.{i & 255}", "192.168.1.10", 502, i + 1), ts=10.0 + i, app=""))
    obs.close()
    reader = Store(tmp_path / "z.db", readonly=True)
    assert reader.count_assets() <= 200
    assert reader.count_edges() <= 200
    assert reader.counters()["inventory.evicted"] == obs.inventory.evicted >= 4800
    assert reader.get_asset("192.168.1.10") is not None
    reader.close()


def _huge_description() -> dict[str, str]:
    return {"application_uri": "urn:" + "u" * 65536, "application_name": "N" * 65536}


def test_G2_64kib_device_names_truncated_in_memory_and_store(tmp_path: Path) -> None:
    limits = Limits(max_field_chars=256)
    store = Store(tmp_path / "z.db")
    obs = InventoryObserver(lambda a: None, limits, store, oui=NO_OUI)
    objects = ((0x00, "V" * 65536), (0x04, "P\x1b[2J" * 16384))  # FC43 VendorName, ProductName
    txn = ModbusTransaction(
        ts=5.0,
        flow=flow("10.0.0.1", "10.0.0.2"),
        transaction_id=1,
        unit_id=1,
        function=43,
        function_name="encapsulated_interface_transport",
        category="diagnostic",
        code_class="public_assigned",
        status="ok",
        request=ModbusRequest(43, mei_type=14, device_id=DeviceIdentification(1)),
        response=ModbusResponse(43, mei_type=14, device_id=DeviceIdentification(1, 0, 1, False, 0, objects)),
    )
    obs.handle(txn)
    opc = OpcUaMessage(
        ts=6.0,
        flow=flow("10.0.0.3", "10.0.0.2", 4840, 2),
        to_server=True,
        message_type="MSG",
        secure_channel_id=1,
        request_id=1,
        service="CreateSession",
        request_type_id=461,
        response_type_id=464,
        request_handle=1,
        status="Good",
        security_policy="",
        security_mode="None",
        request={"client_description": _huge_description()},
        response={"server_endpoints": [{"endpoint_url": "opc.tcp://x", "server": _huge_description()}]},
        chunks=(),
    )
    obs.handle(opc)
    obs.close()
    server = obs.inventory.get("10.0.0.2")
    assert server is not None
    for key in (
        "modbus.vendor_name",
        "modbus.product_name",
        "opcua.application_name",
        "opcua.application_uri",
    ):
        assert len(server.identity[key]) == 256, key
    assert "\x1b" not in server.identity["modbus.product_name"]
    reader = Store(tmp_path / "z.db", readonly=True)
    saved = reader.get_asset("10.0.0.2")
    reader.close()
    assert saved is not None
    assert len(saved["identity"]["opcua.application_name"]) == 256
    assert len(json.dumps(saved)) < 16_000


def test_clean_text_escapes_controls_and_caps() -> None:
    assert clean_text("ok", 10) == "ok"
    assert clean_text("a\nb", 10) == "a\\x0ab"
    assert clean_text("x" * 20, 10) == "x" * 9 + "…"
    assert len(clean_text("\x00" * 100_000, 256)) == 256


def test_detail_tables_are_bounded() -> None:
    limits = Limits(max_asset_detail=10)
    inv = Inventory(limits, NO_OUI)
    broker = inv.touch("10.0.0.5", 1.0)
    for i in range(100):
        inv.add_topic_use(broker, f"t/{i}", "publishers", "10.0.0.6")
        inv.add_node_use(broker, f"ns=2;i={i}", "read", "10.0.0.6")
        inv.add_fact(broker, "mqtt.clients", f"10.0.1.{i}")
    assert len(broker.mqtt_topics) == 10
    assert len(broker.opcua_nodes) == 10
    assert len(broker.fact("mqtt.clients")) == 10
    assert inv.detail_dropped == 270


def test_deep_flows_rename_the_native_edge_and_give_identity_to_the_server() -> None:
    from sensor.deep import OtherProtocolFlow

    obs = InventoryObserver(lambda a: None, oui=NO_OUI)
    native = FlowRef(9, "1:x", "tcp", "10.0.0.1", 49152, "10.0.0.2", 102)
    obs.handle(summary(native, ts=50.0, app=""))
    assert obs.graph.get(("10.0.0.1", "10.0.0.2", "tcp", 102)) is not None
    deep = OtherProtocolFlow(
        protocol="s7comm",
        transport="tcp",
        client_ip="10.0.0.1",
        client_port=49152,
        server_ip="10.0.0.2",
        server_port=102,
        first_ts=50.0,
        last_ts=51.0,
        packets=9,
        identity={"order_number": "6ES7 315-2EH14-0AB0", "plc_name": "x" * 5000},
    )
    mac_a, mac_b = "00:0e:8c:00:00:01", "00:0e:8c:00:00:02"
    profinet = OtherProtocolFlow("profinet", "eth", mac_a, 0, mac_b, 0, 1.0, 2.0, 3)
    obs.absorb_other_protocols([deep, profinet])
    assert obs.graph.get(("10.0.0.1", "10.0.0.2", "tcp", 102)) is None
    edge = obs.graph.get(("10.0.0.1", "10.0.0.2", "s7comm", 102))
    assert edge is not None and (edge.packets, edge.flows) == (9, 1)  # the native counts, moved
    plc = obs.inventory.get("10.0.0.2")
    assert plc is not None
    assert plc.identity["s7comm.order_number"] == "6ES7 315-2EH14-0AB0"
    assert len(plc.identity["s7comm.plc_name"]) == 256
    assert obs.roles() == {"s7comm_client": ["10.0.0.1"], "s7comm_server": ["10.0.0.2"]}
    assert obs.deep_flows == 1


def test_labels_name_the_asset_for_policy_zones() -> None:
    """What a policy zone may name an asset by: identity values, inferred roles, vendor."""
    from sensor.assets.observer import InventoryObserver

    observer = InventoryObserver(lambda alert: None)
    asset = observer.inventory.touch("10.0.0.5", 1.0)
    observer.inventory.set_identity(asset, "modbus.product_name", "ZW-PLC-100")
    for unit in ("1", "2", "3"):
        observer.inventory.add_fact(asset, "modbus.units", unit)
    labels = observer.labels("10.0.0.5")
    assert {"ZW-PLC-100", "modbus_server", "modbus_gateway"} <= labels
    assert observer.labels("10.0.0.99") == set()


def _poll(ts: float, request: ModbusRequest, values: tuple[int, ...]) -> ModbusTransaction:
    return ModbusTransaction(
        ts=ts,
        flow=flow("10.0.0.1", "10.0.0.2"),
        transaction_id=int(ts),
        unit_id=1,
        function=3,
        function_name="read_holding_registers",
        category="read",
        code_class="public_assigned",
        status="ok",
        request=request,
        response=ModbusResponse(3, address=request.address, quantity=request.quantity, values=values),
    )


def test_a_repeated_poll_is_mapped_once_and_its_values_every_time() -> None:
    """A poll's request record repeats (the dissector memoises request parses): its addresses and reader
    are recorded once, the range of the values it reads still widens with every answer, and after an
    eviction the poll is mapped again on the asset that comes back."""
    obs = InventoryObserver(lambda a: None, Limits(max_assets=3), None, oui=NO_OUI)
    poll = ModbusRequest(3, address=10, quantity=2)
    for ts, values in ((1.0, (5, 6)), (2.0, (4, 9)), (3.0, (7, 7))):
        obs.handle(_poll(ts, poll, values))
    server = obs.inventory.get("10.0.0.2")
    assert server is not None
    use = server.modbus_map["1/holding_registers"]
    assert (use.read.spans, use.readers, use.min_value, use.max_value) == ([[10, 11]], {"10.0.0.1"}, 4, 9)
    obs.handle(_poll(4.0, ModbusRequest(3, address=20, quantity=1), (1,)))  # another poll, same flow
    assert use.read.spans == [[10, 11], [20, 20]] and use.min_value == 1
    for other in ("10.0.0.7", "10.0.0.8"):  # two new hosts: the cap of 3 evicts the server
        obs.handle(FlowSummary(flow(other, "10.0.0.9"), 5.0, 5.0, 1, 1, 60, 60, "closed", "fin"))
    assert obs.inventory.get("10.0.0.2") is None
    obs.handle(_poll(6.0, poll, (3, 3)))
    back = obs.inventory.get("10.0.0.2")
    assert back is not None
    assert back.modbus_map["1/holding_registers"].read.spans == [[10, 11]]
