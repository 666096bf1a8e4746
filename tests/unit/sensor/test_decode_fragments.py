"""Decoder: IPv4 and IPv6 fragment reassembly, first-wins overlaps, and the T2 caps."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6

from sensor.decode import Decoder
from sensor.limits import Limits
from sensor.records import PROTO_UDP, Frame, Packet

PAYLOAD = bytes(range(256)) * 12  # 3072 bytes, so a datagram needs several fragments


def udp_datagram(ident: int = 77) -> IP:
    return IP(src="10.0.0.1", dst="10.0.0.2", id=ident) / UDP(sport=5000, dport=47808) / PAYLOAD


def feed(decoder: Decoder, raw_fragments: list[bytes], ts: float = 1.0) -> list[Packet]:
    out = []
    for raw in raw_fragments:
        packet = decoder.decode(Frame(ts, 101, raw, len(raw)))
        if packet is not None:
            out.append(packet)
    return out


def ipv4_fragments(ident: int = 77, size: int = 1000) -> list[bytes]:
    return [bytes(f) for f in fragment(udp_datagram(ident), fragsize=size)]


def assert_reassembled(packets: list[Packet], decoder: Decoder) -> None:
    assert len(packets) == 1, decoder.counters
    packet = packets[0]
    assert (packet.proto, packet.sport, packet.dport) == (PROTO_UDP, 5000, 47808)
    assert packet.payload == PAYLOAD
    assert decoder.fragment_trains == 0
    assert decoder.fragment_bytes == 0
    assert decoder.counters["decoder.reassembled"] == 1


def test_ipv4_fragments_in_order() -> None:
    decoder = Decoder()
    fragments = ipv4_fragments()
    assert len(fragments) == 4
    packets = feed(decoder, fragments)
    assert_reassembled(packets, decoder)
    assert decoder.counters["decoder.fragments"] == 4
    assert packets[0].wire_len == sum(len(f) for f in fragments)


def test_ipv4_fragments_reverse_order() -> None:
    decoder = Decoder()
    assert_reassembled(feed(decoder, ipv4_fragments()[::-1]), decoder)


def test_ipv4_fragments_shuffled_and_duplicated() -> None:
    fragments = ipv4_fragments(size=512)
    fragments = fragments + fragments[1:3]
    random.Random(5).shuffle(fragments)
    decoder = Decoder()
    packets = feed(decoder, fragments)
    assert len(packets) >= 1
    assert packets[0].payload == PAYLOAD


def _raw_fragment(offset: int, data: bytes, more: bool, ident: int = 9) -> bytes:
    flags = (0x2000 if more else 0) | (offset // 8)
    header = IP(src="10.0.0.1", dst="10.0.0.2", id=ident, proto=17, flags=0, frag=0)
    raw = bytearray(bytes(header / data))
    struct.pack_into("!H", raw, 6, flags)
    return bytes(raw)


def test_ipv4_overlap_first_wins_in_both_orders() -> None:
    udp = bytes(UDP(sport=1, dport=2, len=8 + 24, chksum=0)) + b"A" * 24
    first = _raw_fragment(0, udp[:24], more=True)
    overlap = _raw_fragment(8, b"X" * 16, more=True)  # rewrites bytes 8..24
    last = _raw_fragment(24, udp[24:], more=False)
    decoder = Decoder()
    packets = feed(decoder, [first, overlap, last])
    assert len(packets) == 1 and packets[0].payload == b"A" * 24
    assert decoder.counters["decoder.fragment_overlap"] >= 1

    decoder = Decoder()
    packets = feed(decoder, [overlap, first, last])
    # the overlapping fragment arrived first: its bytes win where it overlaps
    assert len(packets) == 1
    assert packets[0].payload == b"X" * 16 + b"A" * 8  # IP payload bytes 8..24 = UDP payload 0..16
    assert decoder.counters["decoder.fragment_overlap"] >= 1


def test_ipv4_conflicting_last_fragment_ignored() -> None:
    udp = bytes(UDP(sport=1, dport=2, len=8 + 24, chksum=0)) + b"A" * 24
    decoder = Decoder()
    packets = feed(
        decoder,
        [
            _raw_fragment(24, udp[24:], more=False),
            _raw_fragment(16, b"Z" * 24, more=False),  # claims another end: ignored
            _raw_fragment(0, udp[:24], more=True),
        ],
    )
    assert len(packets) == 1 and packets[0].payload == b"A" * 24
    assert decoder.counters["decoder.fragment_overlap"] == 1


def test_ipv4_fragment_past_65535_invalid() -> None:
    decoder = Decoder()
    assert feed(decoder, [_raw_fragment(65528, b"x" * 16, more=False)]) == []
    assert decoder.counters["decoder.invalid_fragment"] == 1


def test_fragment_trains_time_out_in_packet_time() -> None:
    decoder = Decoder(Limits(fragment_timeout=10.0))
    feed(decoder, ipv4_fragments()[:2], ts=100.0)
    assert decoder.fragment_trains == 1 and decoder.fragment_bytes > 0
    decoder.expire(109.0)
    assert decoder.fragment_trains == 1
    decoder.expire(110.0)
    assert decoder.fragment_trains == 0 and decoder.fragment_bytes == 0
    assert decoder.counters["decoder.fragment_timeout"] == 1


def test_T2_100k_never_completing_fragments_bounded() -> None:
    limits = Limits(max_fragment_trains=64, max_fragment_bytes=64 * 1024, fragment_timeout=5.0)
    decoder = Decoder(limits)
    template = bytearray(_raw_fragment(0, b"F" * 512, more=True, ident=0))
    peak_trains = peak_bytes = 0
    for index in range(100_000):
        struct.pack_into("!H", template, 4, index & 0xFFFF)  # identification
        struct.pack_into("!H", template, 12, 0x0A00 + (index >> 16))  # vary the source beyond 65536 ids
        ts = index * 0.001
        if index % 1000 == 0:
            decoder.expire(ts)
        decoder.decode(Frame(ts, 101, bytes(template), len(template)))
        peak_trains = max(peak_trains, decoder.fragment_trains)
        peak_bytes = max(peak_bytes, decoder.fragment_bytes)
    assert peak_trains <= limits.max_fragment_trains
    assert peak_bytes <= limits.max_fragment_bytes
    assert decoder.counters["decoder.fragments"] == 100_000
    assert decoder.counters["decoder.fragment_limit"] > 0
    assert decoder.counters["decoder.fragment_timeout"] > 0


def test_T2_overlapping_flood_on_one_train_is_bounded() -> None:
    decoder = Decoder(Limits(max_fragment_bytes=1 << 20))
    for index in range(3000):
        offset = (index * 8) % 4096
        feed(decoder, [_raw_fragment(offset, bytes([index % 256]) * 64, more=True)])
    assert decoder.fragment_trains <= 1
    assert decoder.fragment_bytes <= 4096 + 64
    assert decoder.counters["decoder.fragment_overlap"] > 0


def test_T2_byte_cap_drops_the_train() -> None:
    decoder = Decoder(Limits(max_fragment_bytes=2000))
    packets = feed(decoder, ipv4_fragments())
    assert packets == []
    assert decoder.counters["decoder.fragment_limit"] >= 1
    assert decoder.fragment_bytes <= 2000


# --- IPv6 ----------------------------------------------------------------------------------------


def ipv6_fragments() -> list[bytes]:
    datagram = (
        IPv6(src="fd00::1", dst="fd00::2")
        / IPv6ExtHdrFragment(id=0xABCD)
        / UDP(sport=5000, dport=47808)
        / PAYLOAD
    )
    return [bytes(f) for f in fragment6(datagram, 1280)]


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_ipv6_fragments(order: str) -> None:
    fragments = ipv6_fragments()
    assert len(fragments) >= 3
    if order == "reverse":
        fragments.reverse()
    decoder = Decoder()
    packets = feed(decoder, fragments)
    assert_reassembled(packets, decoder)
    assert packets[0].ip_version == 6


def test_ipv6_atomic_fragment_passes_through() -> None:
    raw = bytes(
        IPv6(src="fd00::1", dst="fd00::2")
        / IPv6ExtHdrFragment(offset=0, m=0, id=1)
        / UDP(sport=1, dport=2)
        / b"x"
    )
    decoder = Decoder()
    packets = feed(decoder, [raw])
    assert len(packets) == 1 and packets[0].payload == b"x"
    assert decoder.fragment_trains == 0


def test_ipv4_and_ipv6_trains_do_not_mix() -> None:
    decoder = Decoder()
    v4 = ipv4_fragments()
    v6 = ipv6_fragments()
    packets = feed(decoder, [v4[0], v6[0], v4[1], v6[1], *v4[2:], *v6[2:]])
    assert sorted(p.ip_version for p in packets) == [4, 6]
    assert all(p.payload == PAYLOAD for p in packets)
