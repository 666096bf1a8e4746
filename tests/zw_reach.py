"""A small plant made of the real captures in pcaps/, for the reachability tests (graph paths).

Every sample capture is one real stack talking to itself on ``lo`` (127.0.0.1 both ends). Each is copied
with its client and its server given plant addresses (told apart by the server's port; MACs made from
the addresses, checksums recomputed), so that together they draw chains of connections:

    10.1.1.5 (IT jump host) -opcua/4840-> 10.2.0.4 (SCADA)   -modbus/502 fc 1,3,5,6,8,15,16,22,23-> 10.3.0.10
    10.1.1.5                -mqtt/1883->  10.2.0.7 (gateway) -modbus/502 fc 1,3,4->                  10.3.0.10

:data:`PLANT_POLICY` zones them (it, scada, gateway, safety) with conduits it->scada (OPC UA),
scada->safety and gateway->safety (Modbus reads only): the SCADA host's writes violate the conduit, and
the jump host's MQTT to the gateway crosses zones with no conduit at all.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap
from zw_paths import PCAPS

JUMP_HOST, SCADA, GATEWAY, SAFETY_PLC = "10.1.1.5", "10.2.0.4", "10.2.0.7", "10.3.0.10"

# capture, server port, client address, server address
PLANT = (
    ("opcua-asyncua-none.pcap", 4840, JUMP_HOST, SCADA),
    ("modbus-pymodbus-writes-exceptions.pcap", 502, SCADA, SAFETY_PLC),
    ("mqtt-v311-mosquitto.pcap", 1883, JUMP_HOST, GATEWAY),
    ("modbus-pymodbus-polling.pcap", 502, GATEWAY, SAFETY_PLC),
)

PLANT_POLICY = """\
version: 1
default: deny
zones:
  - id: it
    members: [10.1.1.0/24]
  - id: scada
    members: [10.2.0.4/32]
  - id: gateway
    members: [10.2.0.7/32]
  - id: safety
    members: [10.3.0.0/24]
conduits:
  - id: it-to-scada
    from: it
    to: scada
    allow:
      - protocol: opcua
  - id: scada-to-safety
    from: scada
    to: safety
    allow:
      - protocol: modbus
        functions: [read]
  - id: gateway-to-safety
    from: gateway
    to: safety
    allow:
      - protocol: modbus
        functions: [read]
"""


def _mac(ip: str) -> str:
    return "02:00:" + ":".join(f"{int(part):02x}" for part in ip.split("."))


def relabel(pcap: Path, out: Path, server_port: int, client: str, server: str) -> Path:
    """``pcap`` with its client's packets from ``client`` to ``server`` and its server's the other way."""
    packets = rdpcap(str(pcap))
    for packet in packets:
        ip, tcp = packet[IP], packet[TCP]
        from_server = tcp.sport == server_port
        ip.src, ip.dst = (server, client) if from_server else (client, server)
        packet[Ether].src, packet[Ether].dst = _mac(ip.src), _mac(ip.dst)
        del ip.chksum, ip.len, tcp.chksum
    wrpcap(str(out), packets)
    return out


def plant_captures(directory: Path) -> list[Path]:
    """The four captures of :data:`PLANT`, relabelled, written in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        relabel(PCAPS / name, directory / f"plant-{name}", port, client, server)
        for name, port, client, server in PLANT
    ]


def plant_policy(path: Path) -> Path:
    path.write_text(PLANT_POLICY)
    return path
