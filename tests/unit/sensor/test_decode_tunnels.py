"""Decoder: tunnels opened (GRE, ERSPAN I/II/III, VXLAN, IP in IP), so remote mirroring is seen.

A sensor fed by ERSPAN or VXLAN from remote switches must see the mirrored frames themselves, not one
GRE or UDP flow from the switch to the sensor. Frames are built with scapy (an independent encoder);
the end-to-end test wraps a capture of real pymodbus traffic in each tunnel and checks both our
replay and tshark (which opens the same tunnels) against the unwrapped capture.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet as ScapyPacket
from scapy.utils import rdpcap, wrpcap
from zw_paths import PCAPS
from zw_tshark import modbus_function_codes

from sensor.decode import MAX_TUNNEL_DEPTH, MAX_TUNNELS_KEPT, Decoder
from sensor.records import Frame, Packet, Tunnel
from sensor.runtime import SensorConfig, replay

MODBUS_REQUEST = bytes.fromhex("000100000006010300000002")
SWITCH, SENSOR = "192.0.2.1", "192.0.2.2"  # the tunnel's ends: a remote switch and the sensor


def mirrored_frame() -> ScapyPacket:
    """The frame the remote switch mirrors: a Modbus request from an HMI to a PLC."""
    return (
        Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=40000, dport=502, seq=1000, ack=7, flags="PA")
        / MODBUS_REQUEST
    )


def link() -> ScapyPacket:
    """The tunnel's Ethernet header (addresses given: scapy would otherwise look them up by ARP)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def outer(payload: ScapyPacket | bytes, proto: int = 47) -> ScapyPacket:
    return link() / IP(src=SWITCH, dst=SENSOR, proto=proto) / payload


def decode(frame: bytes) -> tuple[Packet | None, Decoder]:
    decoder = Decoder()
    return decoder.decode(Frame(2.5, 1, frame, len(frame))), decoder


def decode_alone(frame: ScapyPacket, linktype: int = 1) -> Packet:
    """What the decoder gives for the inner frame captured without any tunnel."""
    data = bytes(frame)
    packet = Decoder().decode(Frame(2.5, linktype, data, len(data)))
    assert packet is not None
    return packet


INNER = mirrored_frame()
ERSPAN_III_IP_FRAME = 2  # frame type 2 (IP) of ERSPAN type III, which no one defines the layout of


def tunnel(kind: str, session: int | None = None, ends: tuple[str, str] = (SWITCH, SENSOR)) -> Tunnel:
    return Tunnel(kind, *ends, 1, session)


# name -> (tunnelled frame, the tunnel its packet must name, the inner frame alone and its link type)
TUNNELS: dict[str, tuple[ScapyPacket, Tunnel, ScapyPacket, int]] = {
    "gre_ipv4": (outer(GRE(proto=0x0800) / INNER[IP]), tunnel("gre"), INNER[IP], 228),
    "gre_ethernet": (outer(GRE(proto=0x6558) / INNER), tunnel("gre"), INNER, 1),
    "gre_all_optional_fields": (
        outer(
            GRE(chksum_present=1, key_present=1, seqnum_present=1, key=9, sequence_number=3, proto=0x6558)
            / INNER
        ),
        tunnel("gre", session=9),  # the GRE key
        INNER,
        1,
    ),
    "erspan_i": (outer(GRE(proto=0x88BE) / INNER), tunnel("erspan_i"), INNER, 1),
    "erspan_ii": (
        outer(GRE(seqnum_present=1, sequence_number=5, proto=0x88BE) / ERSPAN_II(session_id=7) / INNER),
        tunnel("erspan_ii", session=7),
        INNER,
        1,
    ),
    "erspan_iii": (
        outer(GRE(seqnum_present=1, proto=0x22EB) / ERSPAN_III(session_id=1023, o=0) / INNER),
        tunnel("erspan_iii", session=1023),
        INNER,
        1,
    ),
    "erspan_iii_platform_subheader": (
        outer(
            GRE(seqnum_present=1, proto=0x22EB)
            / ERSPAN_III(session_id=3, o=1)
            / ERSPAN_PlatformSpecific()
            / INNER
        ),
        tunnel("erspan_iii", session=3),
        INNER,
        1,
    ),
    "vxlan": (
        link() / IP(src=SWITCH, dst=SENSOR) / UDP(sport=50000, dport=4789) / VXLAN(vni=0xABCDEF) / INNER,
        tunnel("vxlan", session=0xABCDEF),
        INNER,
        1,
    ),
    "gre_over_ipv6": (
        link() / IPv6(src="2001:db8::1", dst="2001:db8::2", nh=47) / GRE(proto=0x6558) / INNER,
        tunnel("gre", ends=("2001:db8::1", "2001:db8::2")),
        INNER,
        1,
    ),
    "ipv4_in_ipv4": (outer(INNER[IP], proto=4), tunnel("ip_in_ip"), INNER[IP], 228),
    "ipv6_in_ipv4": (
        outer(
            IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=40000, dport=502, flags="PA") / MODBUS_REQUEST, 41
        ),
        tunnel("ip_in_ip"),
        IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=40000, dport=502, flags="PA") / MODBUS_REQUEST,
        229,
    ),
}


@pytest.mark.parametrize("name", sorted(TUNNELS))
def test_tunnel_gives_the_inner_packet_as_if_captured_alone(name: str) -> None:
    tunnelled, expected_tunnel, inner, linktype = TUNNELS[name]
    expected = decode_alone(inner, linktype)
    assert expected.tunnel is None
    for frame in (bytes(tunnelled), bytes(tunnelled) + b"\x00" * 12):  # whole, then with Ethernet padding
        packet, decoder = decode(frame)
        assert packet == expected._replace(ts=2.5, tunnel=expected_tunnel)
        assert decoder.counters[f"decoder.decapsulated_{expected_tunnel.kind}"] == 1
        assert decoder.invalid == 0


def test_tunnels_nest_up_to_the_depth_limit_and_no_further() -> None:
    frame: ScapyPacket = INNER
    for depth in range(MAX_TUNNEL_DEPTH):
        frame = link() / IP(src=SWITCH, dst=SENSOR) / UDP(dport=4789) / VXLAN(vni=depth) / frame
    packet, decoder = decode(bytes(frame))
    outermost = Tunnel("vxlan", SWITCH, SENSOR, MAX_TUNNEL_DEPTH, MAX_TUNNEL_DEPTH - 1)
    assert packet == decode_alone(INNER)._replace(ts=2.5, tunnel=outermost)
    assert decoder.counters["decoder.decapsulated_vxlan"] == MAX_TUNNEL_DEPTH

    packet, decoder = decode(bytes(outer(GRE(proto=0x6558) / frame)))
    assert packet is None
    assert decoder.counters["decoder.tunnel_depth"] == 1
    assert decoder.invalid == 1


def test_a_frame_of_nested_gre_headers_is_cut_at_the_depth_limit() -> None:
    """Hostile: a 64 KB datagram of GRE-in-IP headers, 2,500 deep, must not recurse without bound."""
    layer = bytes(IP(src=SWITCH, dst=SENSOR, proto=47) / GRE(proto=0x0800))
    datagram = layer * (60_000 // len(layer))
    # each IPv4 header must cover the rest of the datagram, or the first one already ends it
    chain = bytearray()
    for index in range(len(datagram) // len(layer)):
        header = bytearray(layer)
        remaining = len(datagram) - index * len(layer)
        header[2:4] = remaining.to_bytes(2, "big")
        chain += header
    packet, decoder = decode(bytes(link() / IP(bytes(chain))))
    assert packet is None
    assert decoder.counters["decoder.tunnel_depth"] == 1
    assert decoder.counters["decoder.decapsulated_gre"] == MAX_TUNNEL_DEPTH


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (bytes(GRE(proto=0x6558))[:3], "decoder.gre_truncated"),
        (bytes(GRE(key_present=1, seqnum_present=1, proto=0x6558))[:8], "decoder.gre_truncated"),
        (bytes(GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II())[:10], "decoder.erspan_invalid"),
        (bytes(GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II(ver=2) / INNER), "decoder.erspan_invalid"),
        (bytes(GRE(seqnum_present=1, proto=0x22EB) / ERSPAN_III(o=1))[:20], "decoder.erspan_invalid"),
    ],
    ids=[
        "gre_header",
        "gre_optional_fields",
        "erspan_ii_header",
        "erspan_ii_version",
        "erspan_iii_subheader",
    ],
)
def test_malformed_tunnel_headers_are_counted_not_raised(payload: bytes, reason: str) -> None:
    packet, decoder = decode(bytes(outer(payload)))
    assert packet is None
    assert decoder.counters[reason] == 1
    assert decoder.invalid == 1


@pytest.mark.parametrize(
    "gre",
    [
        GRE(version=1, proto=0x880B),  # PPTP's enhanced GRE
        GRE(routing_present=1, proto=0x0800),  # RFC 1701 source routing
        GRE(proto=0x88B5),  # a payload type nobody here reads
        GRE(seqnum_present=1, proto=0x22EB) / ERSPAN_III(ft=ERSPAN_III_IP_FRAME),
    ],
    ids=["pptp", "source_routing", "unknown_payload", "erspan_iii_ip_frame"],
)
def test_gre_not_opened_stays_an_outer_packet(gre: ScapyPacket) -> None:
    frame = outer(gre / b"payload")
    packet, decoder = decode(bytes(frame))
    assert packet is not None
    assert (packet.proto, packet.payload) == (47, bytes(frame[GRE]))
    assert decoder.counters["decoder.gre_unsupported"] == 1
    assert decoder.invalid == 0


def test_a_datagram_to_4789_without_a_vxlan_header_stays_udp() -> None:
    frame = link() / IP(src=SWITCH, dst=SENSOR) / UDP(sport=50000, dport=4789) / (b"\x00" * 8 + bytes(INNER))
    packet, decoder = decode(bytes(frame))
    assert packet is not None
    assert (packet.proto, packet.dport, packet.payload) == (17, 4789, b"\x00" * 8 + bytes(INNER))
    assert decoder.counters["decoder.vxlan_unsupported"] == 1


# --- end to end: a real capture, remotely mirrored -----------------------------------------------

WRAPPERS: dict[str, Any] = {  # (index, frame) -> the frame as the remote switch sends it to the sensor
    "erspan_ii": lambda i, f: outer(
        GRE(seqnum_present=1, sequence_number=i, proto=0x88BE) / ERSPAN_II(session_id=11) / f
    ),
    "erspan_iii": lambda i, f: outer(
        GRE(seqnum_present=1, sequence_number=i, proto=0x22EB) / ERSPAN_III(session_id=12) / f
    ),
    "vxlan": lambda i, f: outer(UDP(sport=49152 + i % 1000, dport=4789) / VXLAN(vni=7) / f, proto=17),
}
SESSIONS = {"erspan_ii": 11, "erspan_iii": 12, "vxlan": 7}  # the session id / VNI each wrapper writes


@pytest.mark.parametrize("tunnel", sorted(WRAPPERS))
def test_real_modbus_capture_mirrored_through_a_tunnel_reads_as_the_original(
    tmp_path: Path, tunnel: str
) -> None:
    original = PCAPS / "modbus-pymodbus-writes-exceptions.pcap"
    frames = rdpcap(str(original))
    wrapped = tmp_path / f"{tunnel}.pcap"
    tunnelled = [WRAPPERS[tunnel](index, frame) for index, frame in enumerate(frames)]
    for before, after in zip(frames, tunnelled, strict=True):
        after.time = before.time
    wrpcap(str(wrapped), tunnelled)

    expected, _ = replay([original], SensorConfig())
    eve = tmp_path / "eve.json"
    summary, reports = replay([wrapped], SensorConfig(eve_path=eve))
    assert reports[0].error is None
    assert summary["modbus"] == expected["modbus"]
    assert summary["modbus"]["transactions"] > 0
    assert summary["flows"] == expected["flows"]
    assert summary["decode_errors"] == 0
    assert summary["decoder"][f"decoder.decapsulated_{tunnel}"] == len(frames)
    # the same devices and communications: the switch and the sensor, the tunnel's ends, are not in them
    assert (summary["assets"], summary["edges"], summary["roles"]) == (
        expected["assets"],
        expected["edges"],
        expected["roles"],
    )
    # every record names the mirroring session that carried it
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    modbus = [r for r in records if r["event_type"] == "modbus"]
    assert len(modbus) == summary["modbus"]["transactions"]
    session = {"type": tunnel, "src_ip": SWITCH, "dest_ip": SENSOR, "depth": 1, "session": SESSIONS[tunnel]}
    assert all(r["tunnel"] == session for r in records if "flow_id" in r)

    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (make test installs it): the oracle half was not checked")
    assert modbus_function_codes(wrapped) == modbus_function_codes(original)


def test_tunnel_records_kept_for_reuse_are_bounded() -> None:
    """Spoofed outer addresses each make a new tunnel record; the decoder keeps a bounded number."""
    decoder = Decoder()
    inner = bytes(GRE(proto=0x6558) / INNER)
    for i in range(MAX_TUNNELS_KEPT + 100):
        source = f"198.51.{i >> 8 & 0xFF}.{i & 0xFF}"
        frame = bytes(link() / IP(src=source, dst=SENSOR, proto=47) / inner)
        packet = decoder.decode(Frame(2.5, 1, frame, len(frame)))
        assert packet is not None and packet.tunnel == Tunnel("gre", source, SENSOR, 1, None)
    assert len(decoder._tunnels) <= MAX_TUNNELS_KEPT
