"""Decoder: every link type, VLAN/QinQ/MPLS, IPv4/IPv6 headers, TCP/UDP, and the T1/T3 rows.

Frames are built with scapy (an independent encoder) or with struct for the link headers scapy
does not write the way a capture file stores them.
"""

from __future__ import annotations

import socket
import struct

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import ARP, Dot1Q, Ether

from sensor.decode import Decoder
from sensor.records import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_PSH, Frame, Packet

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
MODBUS_REQUEST = bytes.fromhex("000100000006010300000002")


def ip_tcp() -> bytes:
    return bytes(
        IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=40000, dport=502, seq=1000, ack=7, flags="PA")
        / MODBUS_REQUEST
    )


def ip6_tcp() -> bytes:
    return bytes(
        IPv6(src="fd00::1", dst="fd00::2")
        / TCP(sport=40000, dport=502, seq=1000, flags="PA")
        / MODBUS_REQUEST
    )


def decode(linktype: int, data: bytes, wire_len: int | None = None) -> tuple[Packet | None, Decoder]:
    decoder = Decoder()
    packet = decoder.decode(Frame(1.5, linktype, data, len(data) if wire_len is None else wire_len))
    return packet, decoder


def assert_modbus_v4(packet: Packet | None) -> None:
    assert packet is not None
    assert packet.ip_version == 4
    assert packet.src == socket.inet_aton("10.0.0.1")
    assert packet.dst == socket.inet_aton("10.0.0.2")
    assert (packet.proto, packet.sport, packet.dport) == (PROTO_TCP, 40000, 502)
    assert packet.payload == MODBUS_REQUEST
    assert packet.seq == 1000
    assert packet.ack == 7
    assert packet.tcp_flags == TCP_PSH | TCP_ACK


def test_ethernet_ipv4_tcp() -> None:
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(
        sport=40000, dport=502, seq=1000, ack=7, flags="PA", window=8192, options=[("MSS", 1460)]
    ) / MODBUS_REQUEST)  # fmt: skip
    packet, decoder = decode(1, frame, wire_len=999)
    assert_modbus_v4(packet)
    assert packet is not None
    assert packet.src_mac == bytes.fromhex("02000000000a")
    assert packet.dst_mac == bytes.fromhex("02000000000b")
    assert packet.window == 8192
    assert packet.tcp_options == bytes.fromhex("020405b4")
    assert packet.wire_len == 999
    assert packet.vlans == ()
    assert packet.ts == 1.5
    assert decoder.invalid == 0


def test_ethernet_padding_is_not_payload() -> None:
    frame = bytes(
        Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=502, flags="A")
    )
    packet, _ = decode(1, frame + b"\x00" * 6)  # minimum frame size padding
    assert packet is not None
    assert packet.payload == b""


def test_vlan_single_tag() -> None:
    packet, _ = decode(1, bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=100) / IP(ip_tcp())))
    assert_modbus_v4(packet)
    assert packet is not None and packet.vlans == (100,)


@pytest.mark.parametrize("outer", [0x88A8, 0x9100, 0x8100])
def test_qinq_outermost_first(outer: int) -> None:
    # dst | src | TPID | PCP/DEI/VID | 0x8100 | VID | 0x0800
    frame = b"\x02" * 12 + struct.pack("!HHHHH", outer, (5 << 13) | 300, 0x8100, 42, 0x0800) + ip_tcp()
    packet, _ = decode(1, frame)
    assert_modbus_v4(packet)
    assert packet is not None and packet.vlans == (300, 42)


def test_vlan_depth_capped() -> None:
    tags = b"".join(struct.pack("!HH", vid, 0x8100) for vid in range(1, 20))
    frame = b"\x00" * 12 + b"\x81\x00" + tags + ip_tcp()
    packet, decoder = decode(1, frame)
    assert packet is None
    assert decoder.counters["decoder.vlan_depth"] == 1
    assert decoder.invalid == 1


def test_vlan_truncated() -> None:
    packet, decoder = decode(1, b"\x00" * 12 + b"\x81\x00\x00")
    assert packet is None
    assert decoder.counters["decoder.vlan_truncated"] == 1


def test_mpls_label_stack() -> None:
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / IP(ip_tcp()))
    packet, _ = decode(1, frame)
    assert_modbus_v4(packet)


def test_mpls_ipv6() -> None:
    packet, _ = decode(1, bytes(Ether(src=MAC_A, dst=MAC_B) / MPLS(label=16, s=1) / IPv6(ip6_tcp())))
    assert packet is not None and packet.ip_version == 6 and packet.payload == MODBUS_REQUEST


def test_arp_is_counted_not_invalid() -> None:
    packet, decoder = decode(1, bytes(Ether(src=MAC_A, dst=MAC_B) / ARP()))
    assert packet is None
    assert decoder.counters["decoder.non_ip"] == 1
    assert decoder.invalid == 0


def test_linux_sll() -> None:
    # packet type | ARPHRD_ETHER | address length | address (8, padded) | protocol
    header = struct.pack("!HHH8sH", 0, 1, 6, bytes.fromhex("02000000000a") + b"\x00\x00", 0x0800)
    packet, _ = decode(113, header + ip_tcp())
    assert_modbus_v4(packet)
    assert packet is not None and packet.src_mac == bytes.fromhex("02000000000a") and packet.dst_mac == b""


def test_linux_sll_with_vlan() -> None:
    header = struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\x00\x00", 0x8100)
    packet, _ = decode(113, header + struct.pack("!HH", 7, 0x0800) + ip_tcp())
    assert_modbus_v4(packet)
    assert packet is not None and packet.vlans == (7,)


def test_linux_sll2() -> None:
    # protocol | reserved | ifindex | ARPHRD | packet type | address length | address (8)
    header = struct.pack("!HHIHBB8s", 0x86DD, 0, 3, 1, 4, 6, b"\x02" * 6 + b"\x00\x00")
    packet, _ = decode(276, header + ip6_tcp())
    assert packet is not None
    assert packet.ip_version == 6
    assert packet.src == socket.inet_pton(socket.AF_INET6, "fd00::1")
    assert packet.payload == MODBUS_REQUEST
    assert packet.src_mac == b"\x02" * 6


@pytest.mark.parametrize(
    ("linktype", "builder"), [(101, ip_tcp), (101, ip6_tcp), (228, ip_tcp), (229, ip6_tcp)]
)
def test_raw_ip(linktype: int, builder: object) -> None:
    assert callable(builder)
    packet, _ = decode(linktype, builder())
    assert packet is not None and packet.payload == MODBUS_REQUEST and packet.src_mac == b""


def test_raw_ip_bad_version() -> None:
    packet, decoder = decode(101, b"\x50" + ip_tcp()[1:])
    assert packet is None
    assert decoder.counters["decoder.invalid_ip_version"] == 1


@pytest.mark.parametrize("family", [2, 24, 28, 30])
@pytest.mark.parametrize("order", ["<", ">"])
def test_bsd_null_either_byte_order(family: int, order: str) -> None:
    payload = ip_tcp() if family == 2 else ip6_tcp()
    packet, _ = decode(0, struct.pack(order + "I", family) + payload)
    assert packet is not None and packet.payload == MODBUS_REQUEST
    assert packet.ip_version == (4 if family == 2 else 6)


def test_openbsd_loop_network_order() -> None:
    packet, _ = decode(108, struct.pack("!I", 24) + ip6_tcp())
    assert packet is not None and packet.ip_version == 6
    packet, decoder = decode(108, struct.pack("<I", 2) + ip_tcp())  # little-endian is not AF_INET here
    assert packet is None and decoder.counters["decoder.non_ip"] == 1


def test_null_unknown_family_is_non_ip() -> None:
    packet, decoder = decode(0, struct.pack("<I", 7) + ip_tcp())
    assert packet is None and decoder.counters["decoder.non_ip"] == 1 and decoder.invalid == 0


def test_unsupported_linktype_counted() -> None:
    packet, decoder = decode(147, ip_tcp())
    assert packet is None and decoder.counters["decoder.unsupported_linktype"] == 1


def test_udp_and_icmp() -> None:
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=47808) / b"\x81\x0b\x00\x08abcd")
    packet, _ = decode(101, udp)
    assert packet is not None
    assert (packet.proto, packet.sport, packet.dport, packet.payload) == (
        PROTO_UDP,
        5000,
        47808,
        b"\x81\x0b\x00\x08abcd",
    )
    icmp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0) / b"ping")
    packet, _ = decode(101, icmp)
    assert packet is not None
    assert (packet.proto, packet.sport, packet.dport) == (1, 0, 0)
    assert packet.payload[:1] == b"\x08" and packet.payload.endswith(b"ping")


def test_udp_length_checks() -> None:
    good = bytearray(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"abcd"))
    short = bytes(good[:24]) + struct.pack("!H", 4) + bytes(good[26:])
    packet, decoder = decode(101, short)
    assert packet is None and decoder.counters["decoder.invalid_udp_length"] == 1
    long = bytes(good[:24]) + struct.pack("!H", 200) + bytes(good[26:])
    packet, decoder = decode(101, long)
    assert packet is None and decoder.counters["decoder.udp_truncated"] == 1


# --- T1: IPv4/IPv6 header checks -----------------------------------------------------------------


def with_ipv4_field(offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(ip_tcp())
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_T1_ipv4_ihl_below_5_is_invalid(ihl: int) -> None:
    packet, decoder = decode(101, with_ipv4_field(0, "!B", 0x40 | ihl))
    assert packet is None
    assert decoder.counters["decoder.invalid_ipv4_header"] == 1
    assert decoder.invalid == 1


def test_T1_ipv4_total_length_below_header_is_invalid() -> None:
    packet, decoder = decode(101, with_ipv4_field(2, "!H", 12))
    assert packet is None and decoder.counters["decoder.invalid_ipv4_header"] == 1


def test_T1_ipv4_total_length_beyond_capture_is_invalid() -> None:
    packet, decoder = decode(101, with_ipv4_field(2, "!H", 1400))
    assert packet is None and decoder.counters["decoder.ipv4_truncated"] == 1 and decoder.invalid == 1


def test_T1_ipv4_ihl_beyond_total_length_is_invalid() -> None:
    data = with_ipv4_field(0, "!B", 0x4F)  # 60-byte header claimed inside a 52-byte packet
    data = data[:2] + struct.pack("!H", 52) + data[4:52]
    packet, decoder = decode(101, data)
    assert packet is None and decoder.counters["decoder.invalid_ipv4_header"] == 1


def test_T1_ipv6_payload_length_beyond_capture_is_invalid() -> None:
    data = bytearray(ip6_tcp())
    struct.pack_into("!H", data, 4, 5000)
    packet, decoder = decode(101, bytes(data))
    assert packet is None and decoder.counters["decoder.ipv6_truncated"] == 1 and decoder.invalid == 1


@pytest.mark.parametrize("cut", [0, 1, 13, 14, 20, 33, 34, 40, 53])
def test_truncated_headers_at_every_layer(cut: int) -> None:
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=502))
    packet, decoder = decode(1, frame[:cut])
    assert packet is None
    assert decoder.invalid == 1
    assert sum(decoder.counters.values()) == 1


# --- T3: TCP data offset -------------------------------------------------------------------------


@pytest.mark.parametrize("data_offset", [0, 4, 15])
def test_T3_tcp_data_offset_invalid(data_offset: int) -> None:
    data = bytearray(ip_tcp())
    data[20 + 12] = data_offset << 4
    packet, decoder = decode(101, bytes(data))
    assert packet is None
    assert decoder.counters["decoder.invalid_tcp_offset"] == 1
    assert decoder.invalid == 1


def test_T3_tcp_data_offset_beyond_segment_ipv6() -> None:
    data = bytearray(bytes(IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2)))
    data[40 + 12] = 6 << 4  # 24 bytes of header in a 20-byte segment
    packet, decoder = decode(101, bytes(data))
    assert packet is None and decoder.counters["decoder.invalid_tcp_offset"] == 1


# --- IPv6 extension headers ----------------------------------------------------------------------


def test_ipv6_extension_header_chain() -> None:
    data = bytes(
        IPv6(src="fd00::1", dst="fd00::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["fd00::9"])
        / IPv6ExtHdrDestOpt()
        / UDP(sport=1000, dport=2000)
        / b"hello"
    )
    packet, decoder = decode(101, data)
    assert packet is not None, decoder.counters
    assert (packet.proto, packet.sport, packet.dport, packet.payload) == (PROTO_UDP, 1000, 2000, b"hello")


def test_ipv6_authentication_header() -> None:
    # AH (RFC 4302): next header, payload length in 4-octet units minus 2, reserved, SPI, seq, ICV(12)
    ah = struct.pack("!BBHII", 6, 4, 0, 0x100, 1) + b"\x00" * 12
    tcp = bytes(TCP(sport=40000, dport=502, flags="PA") / MODBUS_REQUEST)
    header = struct.pack("!IHBB", 6 << 28, len(ah) + len(tcp), 51, 64)
    addresses = socket.inet_pton(socket.AF_INET6, "fd00::1") + socket.inet_pton(socket.AF_INET6, "fd00::2")
    packet, decoder = decode(101, header + addresses + ah + tcp)
    assert packet is not None, decoder.counters
    assert packet.payload == MODBUS_REQUEST


def test_ipv6_extension_header_limit() -> None:
    layers = IPv6(src="fd00::1", dst="fd00::2")
    for _ in range(12):
        layers = layers / IPv6ExtHdrDestOpt()
    packet, decoder = decode(101, bytes(layers / UDP(sport=1, dport=2)))
    assert packet is None and decoder.counters["decoder.ipv6_ext_limit"] == 1


def test_ipv6_extension_header_truncated() -> None:
    data = bytearray(bytes(IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2)))
    data[41] = 200  # header length far past the packet
    packet, decoder = decode(101, bytes(data))
    assert packet is None and decoder.counters["decoder.ipv6_ext_truncated"] == 1


def test_decode_never_raises_on_short_prefixes() -> None:
    frame = bytes(
        Ether(src=MAC_A, dst=MAC_B)
        / Dot1Q(vlan=3)
        / IPv6(src="fd00::1", dst="fd00::2")
        / IPv6ExtHdrHopByHop()
        / TCP()
    )
    decoder = Decoder()
    for cut in range(len(frame) + 1):
        decoder.decode(Frame(0.0, 1, frame[:cut], cut))
    assert decoder.counters["decoder.internal_error"] == 0
