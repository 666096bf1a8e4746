"""End-to-end tests of sensor.deep through the real tshark.

The captures are built here with scapy from hand-crafted protocol bytes (scapy has no DNP3 or IEC 104
layer), so each test knows exactly which flows, endpoints, packet counts and identity fields tshark
must report. Every test skips with a reason when tshark is not installed.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap
from zw_dnp3 import dnp3_frame
from zw_paths import shared_public_dir

from sensor.deep import (
    OtherProtocolFlow,
    identify_other_protocols,
    scan_captures,
    summarize,
    tshark_available,
)

pytestmark = pytest.mark.skipif(not tshark_available(), reason="tshark is not installed (apt install tshark)")

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


# --------------------------------------------------------------------------------------------------
# Builders: a TCP conversation with correct sequence numbers, and the protocol payloads.
# --------------------------------------------------------------------------------------------------


class TcpConversation:
    """Packets of one TCP connection with consistent seq/ack, starting with the three-way handshake."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int], start: float) -> None:
        self.client, self.server = client, server
        self.time = start
        self.seq = {client: 1000, server: 5000}
        self.packets: list[Packet] = []
        self._segment(client, "S", b"")
        self.seq[client] += 1
        self._segment(server, "SA", b"")
        self.seq[server] += 1
        self._segment(client, "A", b"")

    def _segment(self, sender: tuple[str, int], flags: str, payload: bytes) -> None:
        receiver = self.server if sender == self.client else self.client
        ack = self.seq[receiver] if "A" in flags else 0
        mac_src, mac_dst = (MAC_A, MAC_B) if sender == self.client else (MAC_B, MAC_A)
        packet = (
            Ether(src=mac_src, dst=mac_dst)
            / IP(src=sender[0], dst=receiver[0])
            / TCP(sport=sender[1], dport=receiver[1], flags=flags, seq=self.seq[sender], ack=ack, window=8192)
        )
        if payload:
            packet = packet / Raw(payload)
        packet.time = self.time
        self.time += 0.01
        self.packets.append(packet)

    def send(self, from_client: bool, payload: bytes) -> None:
        """One data segment (PSH/ACK) then the peer's bare ACK."""
        sender = self.client if from_client else self.server
        self._segment(sender, "PA", payload)
        self.seq[sender] += len(payload)
        self._segment(self.server if from_client else self.client, "A", b"")


def udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes, time: float) -> Packet:
    packet = Ether(src=MAC_A, dst=MAC_B) / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1])
    packet = packet / Raw(payload)
    packet.time = time
    return packet


DNP3_MASTER, DNP3_OUTSTATION = 3, 10


def dnp3_capture(path: Path) -> dict[str, Any]:
    """Master 10.0.0.1 reads class 0 from outstation 10.0.0.2:20000 three times."""
    conversation = TcpConversation(("10.0.0.1", 40001), ("10.0.0.2", 20000), start=1_700_000_000.0)
    for sequence in range(3):
        # transport FIR|FIN|seq, application control FIR|FIN|seq, READ, object 60 var 1, qualifier 0x06
        request = bytes([0xC0 | sequence, 0xC0 | sequence, 0x01, 0x3C, 0x01, 0x06])
        # primary frame from the master: DIR=1 PRM=1, function 4 (unconfirmed user data)
        conversation.send(True, dnp3_frame(0xC4, DNP3_OUTSTATION, DNP3_MASTER, request))
        # RESPONSE with IIN 0x0000 and no objects; DIR=0 PRM=1 from the outstation
        response = bytes([0xC0 | sequence, 0xC0 | sequence, 0x81, 0x00, 0x00])
        conversation.send(False, dnp3_frame(0x44, DNP3_MASTER, DNP3_OUTSTATION, response))
    wrpcap(str(path), conversation.packets)
    return {"packets": len(conversation.packets), "pdus": 6}


BACNET_DEVICE_INSTANCE, BACNET_VENDOR = 1234, 260


def bacnet_capture(path: Path) -> dict[str, Any]:
    """A Who-Is from 10.0.1.1 to 10.0.1.2 and the device's I-Am back (ASHRAE 135-2020 §16.10, Annex J)."""
    # Annex J.2: BVLC type 0x81, function 0x0A Original-Unicast-NPDU, length u16 of the whole BVLL
    npdu = bytes([0x01, 0x00])  # version 1, no DNET/SNET, no reply expected
    who_is = bytes([0x10, 0x08])  # unconfirmed request, service 8 Who-Is, no range
    object_id = (8 << 22) | BACNET_DEVICE_INSTANCE  # object type device (8)
    i_am = (
        bytes([0x10, 0x00])  # unconfirmed request, service 0 I-Am
        + b"\xc4"
        + struct.pack(">I", object_id)  # application tag 12 (object identifier), 4 bytes
        + b"\x22\x05\xc4"  # unsigned 1476: max APDU length accepted
        + b"\x91\x03"  # enumerated 3: no segmentation
        + b"\x22"
        + struct.pack(">H", BACNET_VENDOR)  # unsigned: vendor identifier
    )

    def bvll(payload: bytes) -> bytes:
        return bytes([0x81, 0x0A]) + struct.pack(">H", 4 + len(payload)) + payload

    client, device = ("10.0.1.1", 47808), ("10.0.1.2", 47808)
    packets = [
        udp_packet(client, device, bvll(npdu + who_is), 1_700_000_100.0),
        udp_packet(device, client, bvll(npdu + i_am), 1_700_000_100.5),
    ]
    wrpcap(str(path), packets)
    return {"packets": 2}


ENIP_VENDOR, ENIP_DEVICE_TYPE, ENIP_PRODUCT_CODE, ENIP_SERIAL = 1, 14, 54, 0x00C0FFEE


def enip_encapsulation(command: int, data: bytes, context: bytes = b"zwdeep01") -> bytes:
    """EtherNet/IP encapsulation header (ODVA Vol. 2 §2-3): 24 bytes, little-endian.

    +---------+--------+----------------+--------+----------------+---------+
    | command | length | session handle | status | sender context | options |
    |   u16   |  u16   |      u32       |  u32   |    8 bytes     |   u32   |
    +---------+--------+----------------+--------+----------------+---------+
    """
    return struct.pack("<HHII8sI", command, len(data), 0, 0, context, 0) + data


def enip_list_identity_response(product_name: bytes, device_ip: str) -> bytes:
    """ListIdentity reply (command 0x0063) with one CIP Identity item, type 0x000C (ODVA Vol. 2 §2-4.2)."""
    ip_bytes = bytes(int(octet) for octet in device_ip.split("."))
    item = (
        struct.pack("<H", 1)  # encapsulation protocol version
        + struct.pack(">HH4s8x", 2, 44818, ip_bytes)  # socket address, big-endian (sockaddr_in)
        + struct.pack(
            "<HHHBBHI", ENIP_VENDOR, ENIP_DEVICE_TYPE, ENIP_PRODUCT_CODE, 20, 11, 0x0030, ENIP_SERIAL
        )
        + bytes([len(product_name)])
        + product_name
        + b"\x03"  # state
    )
    data = struct.pack("<HHH", 1, 0x000C, len(item)) + item
    return enip_encapsulation(0x0063, data)


def enip_capture(path: Path, product_name: bytes = b"1769-L36ERM/A LOGIX5336ERM") -> dict[str, Any]:
    """ListIdentity over UDP (10.0.2.1 → 10.0.2.2) and over TCP (10.0.2.3 → 10.0.2.2), both answered."""
    device = ("10.0.2.2", 44818)
    packets = [
        udp_packet(("10.0.2.1", 50000), device, enip_encapsulation(0x0063, b""), 1_700_000_200.0),
        udp_packet(
            device, ("10.0.2.1", 50000), enip_list_identity_response(product_name, device[0]), 1_700_000_200.1
        ),
    ]
    conversation = TcpConversation(("10.0.2.3", 50001), device, start=1_700_000_201.0)
    conversation.send(True, enip_encapsulation(0x0063, b""))
    conversation.send(False, enip_list_identity_response(product_name, device[0]))
    wrpcap(str(path), packets + conversation.packets)
    return {"udp_packets": 2, "tcp_packets": len(conversation.packets)}


IEC104_COMMON_ADDRESS = 7


def iec104_capture(path: Path) -> dict[str, Any]:
    """STARTDT act/con then a general interrogation, 10.0.3.1 → 10.0.3.2:2404 (IEC 60870-5-104 §5)."""
    startdt_act = bytes([0x68, 0x04, 0x07, 0x00, 0x00, 0x00])  # U-format, STARTDT act
    startdt_con = bytes([0x68, 0x04, 0x0B, 0x00, 0x00, 0x00])  # U-format, STARTDT con
    # I-format, send/receive sequence 0; ASDU C_IC_NA_1 (100), VSQ 1, COT 6 (activation), OA 0,
    # common address (u16 LE), IOA 0 (3 bytes), QOI 20 (station interrogation)
    asdu = bytes([100, 0x01, 0x06, 0x00]) + struct.pack("<H", IEC104_COMMON_ADDRESS) + bytes([0, 0, 0, 20])
    interrogation = bytes([0x68, 4 + len(asdu), 0x00, 0x00, 0x00, 0x00]) + asdu
    conversation = TcpConversation(("10.0.3.1", 41000), ("10.0.3.2", 2404), start=1_700_000_300.0)
    conversation.send(True, startdt_act)
    conversation.send(False, startdt_con)
    conversation.send(True, interrogation)
    wrpcap(str(path), conversation.packets)
    return {"packets": len(conversation.packets)}


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def only(flows: list[OtherProtocolFlow], protocol: str) -> OtherProtocolFlow:
    matching = [flow for flow in flows if flow.protocol == protocol]
    assert len(matching) == 1, flows
    return matching[0]


def test_s7comm_plus_flows_match_oracle_conversations(oracle: dict[str, Any]) -> None:
    name = "modbus-zeek-big-fc1-fc5-with-s7.pcap"
    facts = oracle[name]
    flows = identify_other_protocols([shared_public_dir() / name])
    # tshark 4.0 has no S7comm-plus dissector: these flows show as tpkt/cotp/data with protocol id 0x72
    assert {flow.protocol for flow in flows} == {"s7comm_plus"}
    by_server = {(flow.server_ip, flow.server_port): flow for flow in flows}
    conversations = {
        frozenset((conversation["a"], conversation["b"])): conversation["frames"]
        for conversation in facts["tcp_conversations"]["list"]
        if conversation["a"].endswith(":102") or conversation["b"].endswith(":102")
    }
    assert len(conversations) == len(flows) == 2
    for flow in flows:
        key = frozenset((f"{flow.client_ip}:{flow.client_port}", f"{flow.server_ip}:{flow.server_port}"))
        assert flow.packets == conversations[key]
        assert flow.server_port == 102
        assert flow.transport == "tcp"
    assert by_server[("10.235.149.243", 102)].client_ip == "10.235.149.95"
    tpkt_frames = {row["protocol"]: row["frames"] for row in facts["protocol_hierarchy"]}["eth:ip:tcp:tpkt"]
    assert sum(flow.protocol_packets for flow in flows) == tpkt_frames
    first = min(flow.first_ts for flow in flows)
    assert facts["first_packet_epoch"] <= first < facts["last_packet_epoch"]
    assert summarize(flows) == {"s7comm_plus": 2}


def test_dnp3_flow_with_addresses(tmp_path: Path) -> None:
    path = tmp_path / "dnp3.pcap"
    expected = dnp3_capture(path)
    flow = only(identify_other_protocols([path]), "dnp3")
    assert (flow.client_ip, flow.client_port, flow.server_ip, flow.server_port) == (
        "10.0.0.1",
        40001,
        "10.0.0.2",
        20000,
    )
    assert flow.transport == "tcp"
    assert flow.packets == expected["packets"]
    assert flow.protocol_packets == expected["pdus"]
    assert flow.identity == {"master_address": str(DNP3_MASTER), "outstation_address": str(DNP3_OUTSTATION)}
    assert flow.first_ts == pytest.approx(1_700_000_000.0)
    assert flow.last_ts == pytest.approx(1_700_000_000.0 + 0.01 * (expected["packets"] - 1))


def test_bacnet_who_is_i_am(tmp_path: Path) -> None:
    path = tmp_path / "bacnet.pcap"
    bacnet_capture(path)
    flow = only(identify_other_protocols([path]), "bacnet")
    assert flow.transport == "udp"
    assert flow.packets == 2
    assert {flow.client_ip, flow.server_ip} == {"10.0.1.1", "10.0.1.2"}
    assert flow.identity["device_instance"] == str(BACNET_DEVICE_INSTANCE)
    assert flow.identity["vendor_id"] == str(BACNET_VENDOR)


def test_enip_list_identity_over_udp_and_tcp(tmp_path: Path) -> None:
    path = tmp_path / "enip.pcap"
    expected = enip_capture(path)
    flows = identify_other_protocols([path])
    assert [flow.protocol for flow in flows] == ["enip", "enip"]
    udp = next(flow for flow in flows if flow.transport == "udp")
    tcp = next(flow for flow in flows if flow.transport == "tcp")
    assert (udp.server_ip, udp.server_port, udp.client_ip, udp.packets) == ("10.0.2.2", 44818, "10.0.2.1", 2)
    assert (tcp.server_ip, tcp.server_port, tcp.client_ip, tcp.packets) == (
        "10.0.2.2",
        44818,
        "10.0.2.3",
        expected["tcp_packets"],
    )
    for flow in (udp, tcp):
        assert flow.identity == {
            "vendor_id": str(ENIP_VENDOR),
            "device_type": str(ENIP_DEVICE_TYPE),
            "product_code": str(ENIP_PRODUCT_CODE),
            "revision": "20.11",
            "serial_number": f"0x{ENIP_SERIAL:08x}",
            "product_name": "1769-L36ERM/A LOGIX5336ERM",
        }
    assert summarize(flows) == {"enip": 2}


def test_enip_hostile_product_name_stays_on_one_record(tmp_path: Path) -> None:
    """Tabs, newlines, separators and invalid UTF-8 in a device-controlled string cannot split a record."""
    path = tmp_path / "enip-hostile.pcap"
    enip_capture(path, product_name=b"evil\tname\nwith\x1fsep\xff\xfe,|end")
    flows = identify_other_protocols([path])
    assert len(flows) == 2
    for flow in flows:
        name = flow.identity["product_name"]
        assert name.startswith("evil") and name.endswith("end")
        assert "\n" not in name and "\t" not in name and "\x1f" not in name
        assert flow.identity["vendor_id"] == str(ENIP_VENDOR)


def test_iec104_startdt_and_interrogation(tmp_path: Path) -> None:
    path = tmp_path / "iec104.pcap"
    expected = iec104_capture(path)
    flow = only(identify_other_protocols([path]), "iec104")
    assert (flow.client_ip, flow.server_ip, flow.server_port) == ("10.0.3.1", "10.0.3.2", 2404)
    assert flow.packets == expected["packets"]
    assert flow.protocol_packets == 3
    assert flow.identity == {"common_address": str(IEC104_COMMON_ADDRESS)}


def test_several_files_merge_and_summary(tmp_path: Path) -> None:
    paths = []
    for name, build in (("d.pcap", dnp3_capture), ("b.pcap", bacnet_capture), ("i.pcap", iec104_capture)):
        build(tmp_path / name)
        paths.append(tmp_path / name)
    enip_capture(tmp_path / "e.pcap")
    paths.append(tmp_path / "e.pcap")
    flows = identify_other_protocols(paths)
    assert summarize(flows) == {"bacnet": 1, "dnp3": 1, "enip": 2, "iec104": 1}
    # skipping a protocol hides it; skip takes our ids as well as Wireshark's layer names
    skipped = identify_other_protocols(paths, skip=frozenset({"dnp3", "bvlc"}))
    assert summarize(skipped) == {"enip": 2, "iec104": 1}


def test_not_a_capture_warns_and_keeps_other_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all" * 10)
    good = tmp_path / "dnp3.pcap"
    dnp3_capture(good)
    with caplog.at_level(logging.WARNING, logger="sensor.deep"):
        result = scan_captures([junk, tmp_path / "missing.pcap", good])
    assert summarize(result.flows) == {"dnp3": 1}
    assert result.files_failed == 2
    assert sum("junk.pcap" in record.getMessage() for record in caplog.records) == 1
    assert sum("missing.pcap" in record.getMessage() for record in caplog.records) == 1


def test_truncated_capture_keeps_what_was_read(tmp_path: Path) -> None:
    whole = tmp_path / "dnp3.pcap"
    expected = dnp3_capture(whole)
    cut = tmp_path / "cut.pcap"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) - 7])
    flow = only(identify_other_protocols([cut]), "dnp3")
    assert flow.packets == expected["packets"] - 1


def test_missing_tshark_warns_and_returns_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dnp3.pcap"
    dnp3_capture(path)
    with caplog.at_level(logging.WARNING, logger="sensor.deep"):
        flows = identify_other_protocols([path], tshark=str(tmp_path / "no-such-tshark"))
    assert flows == []
    assert any("tshark" in record.getMessage() for record in caplog.records)


def test_flow_cap_bounds_state(tmp_path: Path) -> None:
    """Many unidentified UDP flows before the DNP3 flow: the pending table stays at the cap."""
    noise = [
        udp_packet(("10.9.0.1", 10000 + index), ("10.9.0.2", 9), b"x", 1_699_999_000.0 + index / 1000)
        for index in range(300)
    ]
    dnp3_path = tmp_path / "dnp3.pcap"
    dnp3_capture(dnp3_path)
    path = tmp_path / "noise.pcap"
    wrpcap(str(path), noise)
    result = scan_captures([path, dnp3_path], max_flows=50)
    assert summarize(result.flows) == {"dnp3": 1}
    assert result.flows_evicted == 300 - 50 + 1  # the cap holds 50, the DNP3 flow pushes one more out
    assert result.peak_tracked_flows <= 50


@pytest.fixture
def many_captures(tmp_path: Path) -> Iterator[list[Path]]:
    paths = []
    for index in range(3):
        path = tmp_path / f"dnp3-{index}.pcap"
        dnp3_capture(path)
        paths.append(path)
    yield paths


def test_same_flow_in_several_files_is_one_flow(many_captures: list[Path]) -> None:
    flows = identify_other_protocols(many_captures)
    flow = only(flows, "dnp3")
    assert flow.packets == 3 * 15
