"""Identities, roles, protocol detail and edges learnt from real captures, read back from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zw_paths import PCAPS, shared_public_dir

from sensor.runtime import SensorConfig, replay
from sensor.store.sqlite import Store


def replay_into(tmp_path: Path, *pcaps: Path) -> tuple[dict[str, Any], Store]:
    db = tmp_path / "z.db"
    summary, reports = replay(list(pcaps), SensorConfig(db_path=db))
    assert all(r.error is None for r in reports)
    return summary, Store(db, readonly=True)


def test_modbus_fc43_identity_of_the_server(tmp_path: Path) -> None:
    _summary, store = replay_into(tmp_path, PCAPS / "modbus-pymodbus-device-id.pcap")
    asset = store.get_asset("127.0.0.1")
    store.close()
    assert asset is not None
    ident = asset["identity"]
    assert ident["modbus.vendor_name"] == "Zonewarden Test Vendor"
    assert ident["modbus.product_code"] == "ZW-PLC-100"
    assert ident["modbus.major_minor_revision"] == "3.16.1"
    assert ident["modbus.model_name"] == "pymodbus-sim"
    assert asset["name"] == "Zonewarden simulated PLC"
    assert "modbus_server" in asset["roles"] and "engineering_workstation" not in asset["roles"]


def test_modbus_register_map_and_engineering_workstation(tmp_path: Path) -> None:
    _summary, store = replay_into(tmp_path, PCAPS / "modbus-pymodbus-writes-exceptions.pcap")
    asset = store.get_asset("127.0.0.1")
    store.close()
    assert asset is not None
    m = asset["modbus_map"]
    assert m["2/holding_registers"]["written"] == [[20, 22], [30, 31]]  # FC16 20-22, FC23 write 30-31
    assert m["2/holding_registers"]["read"] == [[20, 22]]  # FC23 read part
    assert (m["2/holding_registers"]["min_value"], m["2/holding_registers"]["max_value"]) == (7, 33)
    assert m["1/holding_registers"] | {"readers": []} == {
        "read": [],
        "written": [[5, 5]],
        "readers": [],
        "writers": ["127.0.0.1"],
        "min_value": 1234,
        "max_value": 1234,
    }
    assert m["1/coils"]["written"] == [[3, 4], [10, 18]]  # FC5 coils 3, 4; FC15 nine coils from 10
    assert not any("500" in str(use) or "990" in str(use) for use in m.values())  # exceptions not mapped
    assert "engineering_workstation" in asset["roles"]
    assert "diagnostic function codes 8" in asset["roles"]["engineering_workstation"]


def test_opcua_application_uri_nodes_and_operations(tmp_path: Path) -> None:
    summary, store = replay_into(tmp_path, PCAPS / "opcua-asyncua-none.pcap")
    asset = store.get_asset("127.0.0.1")
    edges = store.list_edges(protocol="opcua")
    store.close()
    assert asset is not None
    # one IP is both ends on loopback: the last CreateSession side written wins per key; the server's
    # ApplicationUri comes from the CreateSession response's endpoints
    assert asset["identity"]["opcua.application_uri"] in (
        "urn:zonewarden:test:opcua-server",
        "urn:zonewarden:test:opcua-client",
    )
    nodes = asset["opcua_nodes"]
    assert nodes["ns=2;i=3"]["write"] == ["127.0.0.1"]
    assert nodes["ns=2;i=2"]["subscribe"] == ["127.0.0.1"]
    assert nodes["ns=2;i=4"]["call"] == ["127.0.0.1"]
    assert nodes["i=2255"]["read"] == ["127.0.0.1"]
    services = set(edges[0]["operations"]["service"])
    assert {"CreateSession", "Read", "Write", "Call", "CreateMonitoredItems", "Publish"} <= services
    assert summary["roles"]["opcua_server"] == ["127.0.0.1"]


def test_opcua_server_uri_on_separate_hosts(tmp_path: Path) -> None:
    """Without loopback's single IP, the server and client identities land on their own assets."""
    from sensor.assets.observer import InventoryObserver
    from sensor.dissectors.opcua.events import OpcUaMessage
    from sensor.records import FlowRef

    obs = InventoryObserver(lambda a: None)
    f = FlowRef(1, "1:x", "tcp", "10.0.0.1", 50000, "10.0.0.2", 4840)
    client_desc = {"application_uri": "urn:c", "application_type": "Client"}
    server_desc = {"application_uri": "urn:zonewarden:test:opcua-server", "application_name": "srv"}
    obs.handle(
        OpcUaMessage(
            1.0,
            f,
            True,
            "MSG",
            1,
            2,
            "CreateSession",
            461,
            464,
            2,
            "Good",
            "",
            "None",
            {"client_description": client_desc},
            {"server_endpoints": [{"endpoint_url": "opc.tcp://10.0.0.2:4840/", "server": server_desc}]},
            (),
        )
    )
    server, client = obs.inventory.get("10.0.0.2"), obs.inventory.get("10.0.0.1")
    assert server is not None and client is not None
    assert server.identity["opcua.application_uri"] == "urn:zonewarden:test:opcua-server"
    assert client.identity["opcua.application_uri"] == "urn:c"
    assert obs.roles() == {"opcua_client": ["10.0.0.1"], "opcua_server": ["10.0.0.2"]}


def test_mqtt_broker_publishers_subscribers_and_topic_tree(tmp_path: Path) -> None:
    summary, store = replay_into(tmp_path, PCAPS / "mqtt-v311-mosquitto.pcap")
    asset = store.get_asset("127.0.0.1")
    store.close()
    assert asset is not None
    topics = asset["mqtt_topics"]
    assert topics["plant/line1/telemetry"]["publishers"] == ["127.0.0.1"]
    assert topics["plant/+/telemetry"]["subscribers"] == ["127.0.0.1"]
    assert set(asset["facts"]["mqtt.client_id"]) == {"intruder", "line1-plc-gw"}
    assert summary["roles"]["mqtt_broker"] == ["127.0.0.1"]
    assert "plant/line1/telemetry" in asset["roles"]["mqtt_publisher"]


def test_tls_certificates_and_sni(tmp_path: Path) -> None:
    summary, store = replay_into(tmp_path, PCAPS / "mqtt-tls-mosquitto.pcap")
    asset = store.get_asset("127.0.0.1")
    store.close()
    assert asset is not None
    assert asset["identity"]["tls.sni"] == "localhost"
    subjects = {c["subject"] for c in asset["certificates"].values()}
    assert {s.split(",")[0] for s in subjects} == {"CN=localhost", "CN=line1-gateway"}
    assert summary["roles"]["tls_server"] == ["127.0.0.1"]


def test_gateway_units_and_moxa_vendor_from_public_capture(tmp_path: Path) -> None:
    pcap = shared_public_dir() / "modbus-iti-fc4-fc6-four-units.pcap"
    summary, store = replay_into(tmp_path, pcap)
    gw = store.get_asset("192.168.0.20")
    store.close()
    assert gw is not None
    assert sorted(gw["facts"]["modbus.units"], key=int) == ["1", "2", "3", "7"]
    assert "1, 2, 3, 7" in gw["roles"]["modbus_gateway"]
    assert gw["vendor"].startswith("Moxa") or gw["vendor"] == ""  # "" when Wireshark's manuf is absent
    assert {e["client"] for e in gw["edges"]} == {
        "192.168.0.21",
        "192.168.0.112",
        "192.168.0.133",
        "192.168.0.144",
        "192.168.0.156",
    }
    assert summary["roles"]["modbus_gateway"] == ["192.168.0.20"]


def test_plant1_master_polls_13_slaves(tmp_path: Path) -> None:
    pcap = shared_public_dir() / "modbus-iti-plant1-master-polling.pcap"
    summary, store = replay_into(tmp_path, pcap)
    master = store.get_asset("141.81.0.10")
    store.close()
    assert master is not None
    assert len(summary["roles"]["modbus_server"]) == 13
    assert summary["roles"]["hmi_scada"] == ["141.81.0.10"]
    assert len(master["edges"]) == 13
    assert sum(e["packets"] for e in master["edges"]) > 10_000
    assert {"15", "16"} <= set(master["facts"]["modbus.write_fcs"])
