"""Roles inferred from what an asset does, each with the sentence that explains it.

A role is never a guess from a port alone: it cites the traffic that earned it, so an analyst can
check it (``zonewarden assets show IP``). The evidence is the asset's fact sets (``Inventory.add_fact``);
this module is pure.

==========================  ==============================================================================
role                        earned by
==========================  ==============================================================================
modbus_server               answering Modbus/TCP requests (units served)
modbus_client               sending Modbus/TCP requests
modbus_gateway              answering for ``GATEWAY_MIN_UNITS`` or more unit ids (0 and 255, which mean
                            "this device" on TCP, do not count): a serial bridge or a gateway
                            (MODBUS Messaging on TCP/IP Implementation Guide v1.0b §4.4.2)
engineering_workstation     program / firmware function codes, diagnostics, or writes from a client that
                            is not polling many devices
hmi_scada                   reading (polling) ``HMI_MIN_TARGETS`` or more devices / units, or OPC UA
                            sessions to that many servers
opcua_server / _client      OPC UA sessions answered / opened
mqtt_broker                 accepting MQTT connections
mqtt_publisher / _subscriber PUBLISH / SUBSCRIBE sent to a broker
tls_server / tls_client     TLS handshakes
<protocol>_server/_client   protocols identified by tshark (``--deep``): s7comm, enip, dnp3, ...
==========================  ==============================================================================
"""

from __future__ import annotations

from typing import Final

from sensor.assets.inventory import Asset

GATEWAY_MIN_UNITS: Final = 3
HMI_MIN_TARGETS: Final = 3
UNIT_IDS_OF_THE_DEVICE_ITSELF: Final = frozenset({"0", "255"})
MAX_LISTED: Final = 8

STANDARD_PORTS: Final[dict[str, frozenset[int]]] = {
    "modbus": frozenset({502}),
    "opcua": frozenset({4840}),
    "mqtt": frozenset({1883, 8883}),
    "tls": frozenset({443, 8883, 4843}),
}
SERVER_ROLE_PROTOCOL: Final = {
    "modbus_server": "modbus",
    "modbus_gateway": "modbus",
    "opcua_server": "opcua",
    "mqtt_broker": "mqtt",
    "tls_server": "tls",
}


def _listed(values: set[str], numeric: bool = False) -> str:
    ordered = sorted(values, key=lambda v: (len(v), v) if numeric else v)
    text = ", ".join(ordered[:MAX_LISTED])
    return text + (f" and {len(ordered) - MAX_LISTED} more" if len(ordered) > MAX_LISTED else "")


def infer_roles(asset: Asset) -> dict[str, str]:
    """Role -> explanation, for one asset."""
    f = asset.fact
    roles: dict[str, str] = {}

    units = f("modbus.units")
    if units:
        roles["modbus_server"] = (
            f"answers Modbus/TCP on port {_listed(f('modbus.server_ports'), True)} to "
            f"{len(f('modbus.clients'))} client(s) for unit id {_listed(units, True)}"
        )
        behind = units - UNIT_IDS_OF_THE_DEVICE_ITSELF
        if len(behind) >= GATEWAY_MIN_UNITS:
            roles["modbus_gateway"] = (
                f"answers for {len(behind)} unit ids ({_listed(behind, True)}) behind one IP: "
                "a gateway or serial bridge"
            )
    servers = f("modbus.servers")
    if servers:
        roles["modbus_client"] = f"sends Modbus/TCP requests to {_listed(servers)}"

    read_targets = f("modbus.read_targets")
    opcua_servers = f("opcua.servers")
    if len(read_targets) >= HMI_MIN_TARGETS:
        roles["hmi_scada"] = f"polls {len(read_targets)} Modbus devices/units ({_listed(read_targets)})"
    elif len(opcua_servers) >= HMI_MIN_TARGETS:
        roles["hmi_scada"] = f"holds OPC UA sessions with {len(opcua_servers)} servers"

    program = f("modbus.program_fcs")
    diagnostic = f("modbus.diagnostic_fcs")
    writes = f("modbus.write_fcs")
    reasons = []
    if program:
        reasons.append(f"program/firmware function codes {_listed(program, True)}")
    if diagnostic:
        reasons.append(f"diagnostic function codes {_listed(diagnostic, True)}")
    if writes and "hmi_scada" not in roles:
        reasons.append(f"write function codes {_listed(writes, True)} without polling many devices")
    if f("opcua.engineering_services"):
        reasons.append(f"OPC UA node management ({_listed(f('opcua.engineering_services'))})")
    if reasons:
        roles["engineering_workstation"] = "uses " + "; ".join(reasons)

    if f("opcua.clients"):
        roles["opcua_server"] = (
            f"answers OPC UA on port {_listed(f('opcua.server_ports'), True)} to "
            f"{_listed(f('opcua.clients'))}"
        )
    if opcua_servers:
        roles["opcua_client"] = f"opens OPC UA sessions to {_listed(opcua_servers)}"

    if f("mqtt.clients"):
        roles["mqtt_broker"] = (
            f"accepts MQTT on port {_listed(f('mqtt.broker_ports'), True)} from "
            f"{len(f('mqtt.clients'))} client host(s) ({_listed(f('mqtt.clients'))})"
        )
    if f("mqtt.published"):
        roles["mqtt_publisher"] = f"publishes to {_listed(f('mqtt.published'))}"
    if f("mqtt.subscribed"):
        roles["mqtt_subscriber"] = f"subscribes to {_listed(f('mqtt.subscribed'))}"

    if f("tls.clients"):
        roles["tls_server"] = f"TLS server on port {_listed(f('tls.server_ports'), True)}"
    if f("tls.servers"):
        roles["tls_client"] = f"TLS client of {_listed(f('tls.servers'))}"

    for key in sorted(asset.facts):
        if key.startswith("other.") and key.endswith(".clients"):
            proto = key[len("other.") : -len(".clients")]
            ports = f(f"other.{proto}.server_ports")
            roles[f"{proto}_server"] = f"{proto} server (identified by tshark) on port {_listed(ports, True)}"
        elif key.startswith("other.") and key.endswith(".servers"):
            proto = key[len("other.") : -len(".servers")]
            roles[f"{proto}_client"] = f"{proto} client (identified by tshark) of {_listed(f(key))}"
    return roles


def role_endpoints(asset: Asset, role: str) -> list[str]:
    """How an asset is listed under a role in the replay summary: its IP, or ``IP:port`` for a server
    listening on a port other than its protocol's standard one (the port is then what matters)."""
    protocol = SERVER_ROLE_PROTOCOL.get(role)
    if protocol is None:
        return [asset.ip]
    ports_key = {
        "modbus": "modbus.server_ports",
        "opcua": "opcua.server_ports",
        "mqtt": "mqtt.broker_ports",
        "tls": "tls.server_ports",
    }[protocol]
    standard = STANDARD_PORTS[protocol]
    ports = sorted(int(p) for p in asset.fact(ports_key))
    if all(p in standard for p in ports):
        return [asset.ip]
    host = f"[{asset.ip}]" if ":" in asset.ip else asset.ip
    return [asset.ip if p in standard else f"{host}:{p}" for p in ports]
