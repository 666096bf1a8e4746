"""Link, network and transport decoding: one captured ``Frame`` in, one ``Packet`` (or ``None``) out.

Layers handled (DESIGN.md §1, HOSTILE_INPUTS T1-T3):

==========  ==================================================================================
linktype    link layer
==========  ==================================================================================
1           Ethernet II (IEEE 802.3), with 802.1Q (0x8100) / 802.1ad QinQ (0x88a8) / legacy 0x9100
            tags nested up to ``MAX_VLAN_TAGS``, and MPLS unicast (0x8847, RFC 3032) label stacks
113         Linux cooked capture v1 (SLL): 16-byte header, protocol at offset 14
276         Linux cooked capture v2 (SLL2): 20-byte header, protocol at offset 0
101/228/229 raw IP (101: version from the first nibble; 228 IPv4; 229 IPv6)
0           BSD loopback (``null``): 4-byte address family in the *capturing host's* byte order
108         OpenBSD loopback: 4-byte address family in network byte order
==========  ==================================================================================

Network layer: IPv4 (RFC 791) with header checks and bounded fragment reassembly (first fragment
wins on overlap, as the RFC 5722 spirit and Suricata's default "first" policy do); IPv6 (RFC 8200)
with hop-by-hop, routing, fragment, destination options and AH (RFC 4302) headers.
Transport: TCP (RFC 9293) and UDP (RFC 768) split into ports and payload; any other IP protocol
becomes a ``Packet`` with ports 0.

Tunnels are opened, so that a sensor fed by remote mirroring sees the mirrored traffic, not one flow
from the switch to itself: GRE (RFC 2784, key and sequence number of RFC 2890) carrying IPv4, IPv6,
Ethernet (transparent bridging, 0x6558) or ERSPAN type I, II (0x88be) and III (0x22eb); VXLAN (RFC 7348,
UDP port 4789); IPv4 and IPv6 in IP (protocols 4 and 41). The packet returned is the innermost one, as
if captured without the tunnel, and names the outermost tunnel in ``Packet.tunnel`` (its type, ends and
ERSPAN session, VXLAN VNI or GRE key: for remote SPAN, which session mirrored it);
``decoder.decapsulated_<kind>`` counts them. At most ``MAX_TUNNEL_DEPTH``
tunnels are opened in one frame. GRE of another version or payload type stays an outer packet
(``decoder.gre_unsupported``), as any other IP protocol does, and so does a datagram to port 4789
without a VXLAN header (``decoder.vxlan_unsupported``).

The decoder never raises on wire input: every dropped packet is counted in ``counters`` under
``decoder.<reason>``; invalid ones also add to ``invalid`` (the replay summary's decode errors).
Non-IP frames (ARP, LLDP, ...) are counted as ``decoder.non_ip`` and are not errors.

The Ethernet + IPv4 + TCP path is the hot one: a few ``struct.unpack_from`` calls and slices,
no intermediate objects besides the ``Packet`` tuple.
"""

from __future__ import annotations

import collections
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import PROTO_TCP, PROTO_UDP, Frame, Packet, Tunnel, format_ip

logger = logging.getLogger(__name__)

# Building a NamedTuple through tuple.__new__ skips its Python-level __new__ (about 3x cheaper);
# every call site passes all the fields in order.
_new_packet: Callable[[type[Packet], tuple[Any, ...]], Packet] = tuple.__new__

MAX_VLAN_TAGS = 8  # nested 802.1Q/QinQ tags followed before the frame is declared invalid
MAX_MPLS_LABELS = 8
MAX_IPV6_EXT_HEADERS = 8  # extension headers walked before the packet is declared invalid
MAX_FRAGMENTS_PER_TRAIN = 256  # keeps first-wins overlap clipping O(n) per fragment with small n
MAX_IP_DATAGRAM = 65535  # RFC 791 / RFC 8200 (no jumbograms): largest reassembled payload
MAX_TUNNEL_DEPTH = 4  # tunnels opened in one frame (GRE in VXLAN in ...) before it is declared invalid
MAX_TUNNELS_KEPT = 4096  # tunnel records kept for reuse (spoofed outer addresses make new ones)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN_TAGS = frozenset((0x8100, 0x88A8, 0x9100))
ETH_MPLS = 0x8847

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# BSD address-family values seen in null/loop headers: AF_INET is 2 everywhere; AF_INET6 is 24
# (NetBSD/OpenBSD), 28 (FreeBSD) or 30 (macOS/Darwin).
_AF_INET = 2
_AF_INET6 = frozenset((24, 28, 30))

# IPv6 extension headers walked to reach the transport (RFC 8200 §4, RFC 4302 for AH)
_IP6_HOPOPTS = 0
_IP6_ROUTING = 43
_IP6_FRAGMENT = 44
_IP6_AH = 51
_IP6_DSTOPTS = 60
_IP6_OPTION_HEADERS = frozenset((_IP6_HOPOPTS, _IP6_ROUTING, _IP6_DSTOPTS))

_unpack_eth_type = struct.Struct("!H").unpack_from
# Ethernet II + a 20-byte IPv4 header in one call: dst MAC, src MAC, EtherType, ver/IHL, (TOS), total
# length, (id), flags/fragment offset, (TTL), protocol, (checksum), source, destination
_unpack_eth_ipv4 = struct.Struct("!6s6sHBxH2xHxB2x4s4s").unpack_from
_unpack_u32_le = struct.Struct("<I").unpack_from
_unpack_u32_be = struct.Struct("!I").unpack_from
# IPv4 header up to the addresses: ver/ihl, tos, total length, id, flags/frag offset, ttl, proto
_unpack_ipv4 = struct.Struct("!BxHHHxB").unpack_from
# IPv6 fixed header start: version/class/flow, payload length, next header
_unpack_ipv6 = struct.Struct("!IHB").unpack_from
# TCP: ports, seq, ack, data offset + flags, window
_unpack_tcp = struct.Struct("!HHIIHH").unpack_from
_unpack_udp = struct.Struct("!HHH").unpack_from
_unpack_ip6_frag = struct.Struct("!BxHI").unpack_from
_unpack_gre = struct.Struct("!HH").unpack_from  # flags and version | protocol type

# Tunnels (module docstring): IP protocol numbers, GRE protocol types and the VXLAN port
PROTO_IPV4_IN_IP = 4  # RFC 2003
PROTO_IPV6_IN_IP = 41  # RFC 2473 / RFC 4213
PROTO_GRE = 47
GRE_CHECKSUM, GRE_ROUTING, GRE_KEY, GRE_SEQUENCE = 0x8000, 0x4000, 0x2000, 0x1000
GRE_TRANSPARENT_ETHERNET = 0x6558
GRE_ERSPAN_II = 0x88BE  # type I too, when the GRE header has no sequence number
GRE_ERSPAN_III = 0x22EB
ERSPAN_III_PLATFORM_SUBHEADER = 0x01  # O flag: an 8-byte platform-specific subheader follows
VXLAN_PORT = 4789
VXLAN_VALID_VNI = 0x08  # I flag (RFC 7348 §5)


@dataclass(slots=True)
class _FragmentTrain:
    """Fragments of one IP datagram being reassembled, kept sorted and non-overlapping."""

    created: float
    starts: list[int] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    total: int = -1  # payload length, known once the last fragment (MF=0) arrived
    held: int = 0  # bytes stored in chunks
    wire_len: int = 0  # sum of the fragments' frame lengths, for byte counters
    next_header: int = -1  # protocol (IPv4) / next header after the fragment header (IPv6)


class Decoder:
    """Turns frames into packets; counts every frame it drops and why."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.counters: collections.Counter[str] = collections.Counter()
        self.invalid = 0
        # insertion order == creation order, so expiry pops from the front
        self._trains: dict[tuple[int, bytes, bytes, int, int], _FragmentTrain] = {}
        self._fragment_bytes = 0
        self._tunnel_depth = 0  # tunnels being opened now (nested decode calls)
        self._tunnels: dict[tuple[str, bytes, bytes, int | None, int], Tunnel] = {}  # made once each

    # --- bookkeeping -------------------------------------------------------------------------------

    def _bad(self, reason: str) -> None:
        self.counters[reason] += 1
        self.invalid += 1

    @property
    def fragment_trains(self) -> int:
        """Datagrams currently waiting for fragments."""
        return len(self._trains)

    @property
    def fragment_bytes(self) -> int:
        """Fragment payload bytes currently held."""
        return self._fragment_bytes

    def expire(self, now: float) -> None:
        """Drop fragment trains older than ``limits.fragment_timeout`` (packet time)."""
        timeout = self.limits.fragment_timeout
        trains = self._trains
        while trains:
            key = next(iter(trains))
            train = trains[key]
            if train.created + timeout > now:
                break
            del trains[key]
            self._fragment_bytes -= train.held
            self.counters["decoder.fragment_timeout"] += 1

    # --- entry point -------------------------------------------------------------------------------

    def decode(self, frame: Frame) -> Packet | None:
        """Decode one frame. Never raises: an undecodable frame is counted and gives ``None``."""
        try:
            ts, linktype, data, wire_len, _ = frame
            if linktype == LINKTYPE_ETHERNET and len(data) >= 54:
                # The hot path: untagged Ethernet, IPv4 with a 20-byte header, unfragmented, TCP.
                # Anything else (or anything odd) takes the general path, which also counts errors.
                dst_mac, src_mac, ethertype, vihl, total_len, frag, proto, src, dst = _unpack_eth_ipv4(
                    data, 0
                )
                if (
                    ethertype == ETH_IPV4
                    and vihl == 0x45
                    and proto == PROTO_TCP
                    and not frag & 0x3FFF
                    and 40 <= total_len <= len(data) - 14
                ):
                    sport, dport, seq, ack, off_flags, window = _unpack_tcp(data, 34)
                    doff = (off_flags >> 12) << 2
                    if 20 <= doff <= total_len - 20:
                        return _new_packet(
                            Packet,
                            (ts, 4, src, dst, PROTO_TCP, sport, dport, data[34 + doff : 14 + total_len],
                             wire_len, seq, ack, off_flags & 0xFF, window,
                             data[54 : 34 + doff] if doff > 20 else b"", src_mac, dst_mac, (), None),
                        )  # fmt: skip
            return self._decode(frame)
        except (struct.error, IndexError, ValueError):  # pragma: no cover - a bug, but never fatal
            logger.debug("decoder bug on frame at %s", frame.ts, exc_info=True)
            self._bad("decoder.internal_error")
            return None

    def _decode(self, frame: Frame) -> Packet | None:
        data = frame.data
        linktype = frame.linktype
        if linktype == LINKTYPE_ETHERNET:
            if len(data) < 14:
                self._bad("decoder.ethernet_truncated")
                return None
            ethertype = _unpack_eth_type(data, 12)[0]
            if ethertype == ETH_IPV4:  # the hot path: untagged IPv4
                return self._ipv4(frame, data, 14, data[6:12], data[0:6], ())
            return self._ethertype(frame, data, 14, ethertype, data[6:12], data[0:6])
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if len(data) < 4:
                self._bad("decoder.loopback_truncated")
                return None
            if linktype == LINKTYPE_LOOP:
                family = _unpack_u32_be(data, 0)[0]
            else:
                # host byte order of the machine that captured: a family fits in 16 bits, so a
                # little-endian read that does not is a big-endian header
                family = _unpack_u32_le(data, 0)[0]
                if family > 0xFFFF:
                    family = _unpack_u32_be(data, 0)[0]
            if family == _AF_INET:
                return self._ipv4(frame, data, 4, b"", b"", ())
            if family in _AF_INET6:
                return self._ipv6(frame, data, 4, b"", b"", ())
            self.counters["decoder.non_ip"] += 1
            return None
        if linktype == LINKTYPE_LINUX_SLL:
            # packet type u16 | ARPHRD u16 | address length u16 | address 8B | protocol u16
            if len(data) < 16:
                self._bad("decoder.sll_truncated")
                return None
            addr_len = min(_unpack_eth_type(data, 4)[0], 8)
            return self._ethertype(
                frame, data, 16, _unpack_eth_type(data, 14)[0], data[6 : 6 + addr_len], b""
            )
        if linktype == LINKTYPE_LINUX_SLL2:
            # protocol u16 | reserved u16 | ifindex u32 | ARPHRD u16 | packet type u8 | addr len u8 |
            # address 8B
            if len(data) < 20:
                self._bad("decoder.sll2_truncated")
                return None
            addr_len = min(data[11], 8)
            return self._ethertype(
                frame, data, 20, _unpack_eth_type(data, 0)[0], data[12 : 12 + addr_len], b""
            )
        if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
            if not data:
                self._bad("decoder.ip_truncated")
                return None
            version = data[0] >> 4
            if linktype == LINKTYPE_IPV4 or (linktype == LINKTYPE_RAW and version == 4):
                return self._ipv4(frame, data, 0, b"", b"", ())
            if linktype == LINKTYPE_IPV6 or version == 6:
                return self._ipv6(frame, data, 0, b"", b"", ())
            self._bad("decoder.invalid_ip_version")
            return None
        self.counters["decoder.unsupported_linktype"] += 1
        return None

    def _ethertype(
        self, frame: Frame, data: bytes, off: int, ethertype: int, src_mac: bytes, dst_mac: bytes
    ) -> Packet | None:
        """Dispatch on an EtherType, peeling VLAN tags (outermost first) and MPLS labels."""
        vlans: tuple[int, ...] = ()
        while ethertype in ETH_VLAN_TAGS:
            if len(vlans) >= MAX_VLAN_TAGS:
                self._bad("decoder.vlan_depth")
                return None
            if len(data) < off + 4:
                self._bad("decoder.vlan_truncated")
                return None
            # IEEE 802.1Q tag: PCP(3) DEI(1) VID(12) | inner EtherType
            tci = _unpack_eth_type(data, off)[0]
            ethertype = _unpack_eth_type(data, off + 2)[0]
            vlans = (*vlans, tci & 0x0FFF)
            off += 4
        if ethertype == ETH_IPV4:
            return self._ipv4(frame, data, off, src_mac, dst_mac, vlans)
        if ethertype == ETH_IPV6:
            return self._ipv6(frame, data, off, src_mac, dst_mac, vlans)
        if ethertype == ETH_MPLS:
            # RFC 3032 label stack entry: label(20) TC(3) S(1) TTL(8); S marks the bottom
            for _ in range(MAX_MPLS_LABELS):
                if len(data) < off + 4:
                    self._bad("decoder.mpls_truncated")
                    return None
                entry = _unpack_u32_be(data, off)[0]
                off += 4
                if entry & 0x100:
                    break
            else:
                self._bad("decoder.mpls_depth")
                return None
            # RFC 3032 has no payload type: sniff the IP version nibble
            version = data[off] >> 4 if len(data) > off else 0
            if version == 4:
                return self._ipv4(frame, data, off, src_mac, dst_mac, vlans)
            if version == 6:
                return self._ipv6(frame, data, off, src_mac, dst_mac, vlans)
        self.counters["decoder.non_ip"] += 1
        return None

    # --- IPv4 --------------------------------------------------------------------------------------

    def _ipv4(
        self,
        frame: Frame,
        data: bytes,
        off: int,
        src_mac: bytes,
        dst_mac: bytes,
        vlans: tuple[int, ...],
    ) -> Packet | None:
        """RFC 791 §3.1 header::

        0      4      8              16   19                 31
        | ver  | IHL  |     TOS      |     total length       |
        |       identification       |flags| fragment offset  |
        |    TTL      |   protocol   |    header checksum     |
        |                  source address                     |
        |               destination address                   |
        """
        if len(data) - off < 20:
            self._bad("decoder.ipv4_truncated")
            return None
        vihl, total_len, ident, frag, proto = _unpack_ipv4(data, off)
        ihl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or ihl < 20 or total_len < ihl:
            self._bad("decoder.invalid_ipv4_header")
            return None
        end = off + total_len
        if end > len(data):
            self._bad("decoder.ipv4_truncated")
            return None
        src = data[off + 12 : off + 16]
        dst = data[off + 16 : off + 20]
        if frag & 0x3FFF:  # MF set or a non-zero offset: a fragment
            return self._ipv4_fragment(
                frame, data, off + ihl, end, src, dst, ident, frag, proto, src_mac, dst_mac, vlans
            )
        return self._transport(
            frame.ts, frame.wire_len, 4, src, dst, proto, data, off + ihl, end, src_mac, dst_mac, vlans
        )

    def _ipv4_fragment(
        self,
        frame: Frame,
        data: bytes,
        start: int,
        end: int,
        src: bytes,
        dst: bytes,
        ident: int,
        frag: int,
        proto: int,
        src_mac: bytes,
        dst_mac: bytes,
        vlans: tuple[int, ...],
    ) -> Packet | None:
        offset = (frag & 0x1FFF) << 3
        more = bool(frag & 0x2000)
        payload = self._add_fragment((4, src, dst, ident, proto), frame, offset, data[start:end], more, proto)
        if payload is None:
            return None
        reassembled, wire_len, _ = payload
        return self._transport(
            frame.ts, wire_len, 4, src, dst, proto, reassembled, 0, len(reassembled), src_mac, dst_mac, vlans
        )

    # --- fragments (IPv4 and IPv6 share the train table) ------------------------------------------

    def _add_fragment(
        self,
        key: tuple[int, bytes, bytes, int, int],
        frame: Frame,
        offset: int,
        chunk: bytes,
        more: bool,
        next_header: int,
    ) -> tuple[bytes, int, int] | None:
        """Add one fragment; return (payload, summed wire length, next header) once complete.

        Overlaps keep the bytes that arrived first (a later fragment only fills holes) and are
        counted as ``decoder.fragment_overlap``: the policy is deterministic whatever the order.
        """
        counters = self.counters
        counters["decoder.fragments"] += 1
        limits = self.limits
        frag_end = offset + len(chunk)
        if frag_end > MAX_IP_DATAGRAM or (more and len(chunk) % 8):
            self._bad("decoder.invalid_fragment")
            return None
        train = self._trains.get(key)
        if train is None:
            if len(self._trains) >= limits.max_fragment_trains:
                self.expire(frame.ts)
            if len(self._trains) >= limits.max_fragment_trains:
                counters["decoder.fragment_limit"] += 1
                return None
            train = _FragmentTrain(frame.ts)
            self._trains[key] = train
        held_end = train.starts[-1] + len(train.chunks[-1]) if train.starts else 0
        if not more:
            if train.total == -1 and frag_end >= held_end:
                train.total = frag_end
            elif train.total != frag_end:
                # a second, different end of the datagram, or data already held past this end:
                # the bytes that came first win, so this fragment is ignored
                counters["decoder.fragment_overlap"] += 1
                return None
        elif train.total != -1 and frag_end > train.total:
            counters["decoder.fragment_overlap"] += 1
            return None
        if offset == 0:
            train.next_header = next_header
        train.wire_len += frame.wire_len

        # clip the new fragment against what is already held (first wins)
        starts, chunks = train.starts, train.chunks
        pieces: list[tuple[int, bytes]] = []
        cursor = offset
        for held_start, held in zip(starts, chunks, strict=True):
            held_end = held_start + len(held)
            if held_end <= cursor:
                continue
            if held_start >= frag_end:
                break
            if held_start > cursor:
                pieces.append((cursor, chunk[cursor - offset : held_start - offset]))
            counters["decoder.fragment_overlap"] += 1
            cursor = max(cursor, held_end)
            if cursor >= frag_end:
                break
        if cursor < frag_end:
            pieces.append((cursor, chunk[cursor - offset :]))
        added = sum(len(p) for _, p in pieces)
        if (
            len(starts) + len(pieces) > MAX_FRAGMENTS_PER_TRAIN
            or self._fragment_bytes + added > limits.max_fragment_bytes
        ):
            counters["decoder.fragment_limit"] += 1
            self._drop_train(key, train)
            return None
        for piece_start, piece in pieces:
            index = 0
            while index < len(starts) and starts[index] < piece_start:
                index += 1
            starts.insert(index, piece_start)
            chunks.insert(index, piece)
        train.held += added
        self._fragment_bytes += added

        if train.total < 0 or not starts or starts[0] != 0 or train.next_header < 0:
            return None
        cursor = 0
        for held_start, held in zip(starts, chunks, strict=True):
            if held_start != cursor:
                return None
            cursor += len(held)
        if cursor != train.total:
            return None
        self._drop_train(key, train)
        counters["decoder.reassembled"] += 1
        return b"".join(chunks), train.wire_len, train.next_header

    def _drop_train(self, key: tuple[int, bytes, bytes, int, int], train: _FragmentTrain) -> None:
        del self._trains[key]
        self._fragment_bytes -= train.held

    # --- IPv6 --------------------------------------------------------------------------------------

    def _ipv6(
        self,
        frame: Frame,
        data: bytes,
        off: int,
        src_mac: bytes,
        dst_mac: bytes,
        vlans: tuple[int, ...],
    ) -> Packet | None:
        """RFC 8200 §3: version/class/flow (4B) | payload length (2B) | next header | hop limit |
        source (16B) | destination (16B), then extension headers (§4) up to the transport."""
        if len(data) - off < 40:
            self._bad("decoder.ipv6_truncated")
            return None
        vcf, payload_len, next_header = _unpack_ipv6(data, off)
        if vcf >> 28 != 6:
            self._bad("decoder.invalid_ipv6_header")
            return None
        end = off + 40 + payload_len
        if end > len(data):
            self._bad("decoder.ipv6_truncated")
            return None
        src = data[off + 8 : off + 24]
        dst = data[off + 24 : off + 40]
        return self._ipv6_payload(
            frame, frame.wire_len, data, off + 40, end, next_header, src, dst, src_mac, dst_mac, vlans, True
        )

    def _ipv6_payload(
        self,
        frame: Frame,
        wire_len: int,
        data: bytes,
        pos: int,
        end: int,
        next_header: int,
        src: bytes,
        dst: bytes,
        src_mac: bytes,
        dst_mac: bytes,
        vlans: tuple[int, ...],
        allow_fragment: bool,
    ) -> Packet | None:
        """Walk extension headers from ``pos`` to the transport header."""
        for _ in range(MAX_IPV6_EXT_HEADERS + 1):
            if next_header in _IP6_OPTION_HEADERS or next_header == _IP6_AH:
                # next header u8 | header length u8 (8-octet units not counting the first 8; AH: 4-octet
                # units minus 2, RFC 4302 §2.2)
                if end - pos < 2:
                    self._bad("decoder.ipv6_ext_truncated")
                    return None
                length = (data[pos + 1] + 2) << 2 if next_header == _IP6_AH else (data[pos + 1] + 1) << 3
                next_header = data[pos]
                pos += length
                if pos > end:
                    self._bad("decoder.ipv6_ext_truncated")
                    return None
                continue
            if next_header == _IP6_FRAGMENT:
                # RFC 8200 §4.5: next header u8 | reserved u8 | offset(13) res(2) M(1) | identification u32
                if end - pos < 8:
                    self._bad("decoder.ipv6_ext_truncated")
                    return None
                inner, off_flags, ident = _unpack_ip6_frag(data, pos)
                pos += 8
                offset = off_flags & 0xFFF8
                more = bool(off_flags & 1)
                if offset == 0 and not more:  # atomic fragment (RFC 6946): nothing to reassemble
                    next_header = inner
                    continue
                if not allow_fragment:
                    self._bad("decoder.invalid_fragment")
                    return None
                done = self._add_fragment((6, src, dst, ident, 0), frame, offset, data[pos:end], more, inner)
                if done is None:
                    return None
                payload, wire_len, inner = done
                return self._ipv6_payload(
                    frame, wire_len, payload, 0, len(payload), inner, src, dst, src_mac, dst_mac, vlans, False
                )
            return self._transport(
                frame.ts, wire_len, 6, src, dst, next_header, data, pos, end, src_mac, dst_mac, vlans
            )
        self._bad("decoder.ipv6_ext_limit")
        return None

    # --- transport ---------------------------------------------------------------------------------

    def _transport(
        self,
        ts: float,
        wire_len: int,
        version: int,
        src: bytes,
        dst: bytes,
        proto: int,
        data: bytes,
        start: int,
        end: int,
        src_mac: bytes,
        dst_mac: bytes,
        vlans: tuple[int, ...],
    ) -> Packet | None:
        if proto == PROTO_TCP:
            # RFC 9293 §3.1: ports | seq | ack | data offset(4) rsvd(4) flags(8) | window
            if end - start < 20:
                self._bad("decoder.tcp_truncated")
                return None
            sport, dport, seq, ack, off_flags, window = _unpack_tcp(data, start)
            doff = (off_flags >> 12) << 2
            if doff < 20 or doff > end - start:
                self._bad("decoder.invalid_tcp_offset")
                return None
            return _new_packet(
                Packet,
                (ts, version, src, dst, PROTO_TCP, sport, dport, data[start + doff : end], wire_len,
                 seq, ack, off_flags & 0xFF, window, data[start + 20 : start + doff] if doff > 20 else b"",
                 src_mac, dst_mac, vlans, None),
            )  # fmt: skip
        if proto == PROTO_UDP:
            # RFC 768: ports | length (header + data) | checksum
            if end - start < 8:
                self._bad("decoder.udp_truncated")
                return None
            sport, dport, length = _unpack_udp(data, start)
            if length < 8:
                self._bad("decoder.invalid_udp_length")
                return None
            if start + length > end:
                self._bad("decoder.udp_truncated")
                return None
            if dport == VXLAN_PORT:
                inner = self._vxlan(ts, data, start + 8, start + length, src, dst)
                if not isinstance(inner, _KeepOuter):
                    return inner
            return Packet(
                ts, version, src, dst, PROTO_UDP, sport, dport, data[start + 8 : start + length], wire_len,
                0, 0, 0, 0, b"", src_mac, dst_mac, vlans,
            )  # fmt: skip
        if proto == PROTO_GRE:
            inner = self._gre(ts, data, start, end, src, dst)
            if not isinstance(inner, _KeepOuter):
                return inner
        elif proto in (PROTO_IPV4_IN_IP, PROTO_IPV6_IN_IP):
            linktype = LINKTYPE_IPV4 if proto == PROTO_IPV4_IN_IP else LINKTYPE_IPV6
            return self._inner(ts, "ip_in_ip", linktype, data[start:end], (src, dst, None))
        return Packet(
            ts,
            version,
            src,
            dst,
            proto,
            0,
            0,
            data[start:end],
            wire_len,
            0,
            0,
            0,
            0,
            b"",
            src_mac,
            dst_mac,
            vlans,
        )

    # --- tunnels -----------------------------------------------------------------------------------

    def _gre(
        self, ts: float, data: bytes, start: int, end: int, src: bytes, dst: bytes
    ) -> Packet | _KeepOuter | None:
        """RFC 2784 §2.1 with RFC 2890 §2 (key, sequence number)::

        |C|R|K|S| reserved0 | ver |   protocol type   |
        |  checksum (if C)  | reserved1 (if C)       |
        |            key (if K)                      |
        |      sequence number (if S)                |

        ERSPAN follows as the GRE payload (draft-foschiano-erspan §4): type I is the mirrored
        Ethernet frame itself (no sequence number in GRE); type II an 8-byte header (version 1);
        type III a 12-byte header (version 2), 8 more with the O flag, then the frame when its frame
        type is 0 (Ethernet). The session id (10 bits, types II and III) names the mirroring session; the
        GRE key, when present, names a plain GRE tunnel.
        """
        if end - start < 4:
            self._bad("decoder.gre_truncated")
            return None
        flags, protocol = _unpack_gre(data, start)
        if flags & (GRE_ROUTING | 0x0007):  # RFC 1701 source routing or version 1 (PPTP): not opened
            self.counters["decoder.gre_unsupported"] += 1
            return _KEEP_OUTER
        # each optional field present (checksum with reserved1, key, sequence number) is 4 bytes
        pos = start + 4 + 4 * (flags & (GRE_CHECKSUM | GRE_KEY | GRE_SEQUENCE)).bit_count()
        if pos > end:
            self._bad("decoder.gre_truncated")
            return None
        key = None
        if flags & GRE_KEY:
            key = _unpack_u32_be(data, start + (8 if flags & GRE_CHECKSUM else 4))[0]
        if protocol == ETH_IPV4:
            return self._inner(ts, "gre", LINKTYPE_IPV4, data[pos:end], (src, dst, key))
        if protocol == ETH_IPV6:
            return self._inner(ts, "gre", LINKTYPE_IPV6, data[pos:end], (src, dst, key))
        if protocol == GRE_TRANSPARENT_ETHERNET:
            return self._inner(ts, "gre", LINKTYPE_ETHERNET, data[pos:end], (src, dst, key))
        if protocol == GRE_ERSPAN_II:
            if not flags & GRE_SEQUENCE:
                return self._inner(ts, "erspan_i", LINKTYPE_ETHERNET, data[pos:end], (src, dst, None))
            if end - pos < 8 or data[pos] >> 4 != 1:
                self._bad("decoder.erspan_invalid")
                return None
            session = _unpack_eth_type(data, pos + 2)[0] & 0x3FF
            return self._inner(ts, "erspan_ii", LINKTYPE_ETHERNET, data[pos + 8 : end], (src, dst, session))
        if protocol == GRE_ERSPAN_III:
            if end - pos < 12 or data[pos] >> 4 != 2:
                self._bad("decoder.erspan_invalid")
                return None
            last = data[pos + 11]  # P(1) FT(5) HW ID(6) D(1) Gra(2) O(1), over bytes 10 and 11
            if (data[pos + 10] >> 2) & 0x1F:  # frame type other than Ethernet (2: IP) is not defined
                self.counters["decoder.gre_unsupported"] += 1
                return _KEEP_OUTER
            session = _unpack_eth_type(data, pos + 2)[0] & 0x3FF
            pos += 20 if last & ERSPAN_III_PLATFORM_SUBHEADER else 12
            if pos > end:
                self._bad("decoder.erspan_invalid")
                return None
            return self._inner(ts, "erspan_iii", LINKTYPE_ETHERNET, data[pos:end], (src, dst, session))
        self.counters["decoder.gre_unsupported"] += 1
        return _KEEP_OUTER

    def _vxlan(
        self, ts: float, data: bytes, start: int, end: int, src: bytes, dst: bytes
    ) -> Packet | _KeepOuter | None:
        """RFC 7348 §5: flags (I = 0x08) | reserved (3B) | VNI (3B) | reserved, then an Ethernet frame.
        A datagram to port 4789 without that header stays a UDP packet: the port may serve another use."""
        if end - start < 8 or not data[start] & VXLAN_VALID_VNI:
            self.counters["decoder.vxlan_unsupported"] += 1
            return _KEEP_OUTER
        vni = _unpack_u32_be(data, start + 4)[0] >> 8
        return self._inner(ts, "vxlan", LINKTYPE_ETHERNET, data[start + 8 : end], (src, dst, vni))

    def _inner(
        self, ts: float, kind: str, linktype: int, inner: bytes, ends: tuple[bytes, bytes, int | None]
    ) -> Packet | None:
        """Decode a tunnel's payload as a frame of its own (its length on the wire is its length); the
        packet keeps the outermost tunnel (``ends``: its source, destination and session id)."""
        if self._tunnel_depth >= MAX_TUNNEL_DEPTH:
            self._bad("decoder.tunnel_depth")
            return None
        self.counters[f"decoder.decapsulated_{kind}"] += 1
        self._tunnel_depth += 1
        try:
            packet = self.decode(Frame(ts, linktype, inner, len(inner)))
        finally:
            self._tunnel_depth -= 1
        if packet is None:
            return None
        depth = packet.tunnel.depth + 1 if packet.tunnel is not None else 1
        key = (kind, *ends, depth)
        tunnel = self._tunnels.get(key)
        if tunnel is None:  # a mirroring session sends every packet: its record is made once
            if len(self._tunnels) >= MAX_TUNNELS_KEPT:
                self._tunnels.clear()
            src, dst, session = ends
            tunnel = self._tunnels[key] = Tunnel(kind, format_ip(src), format_ip(dst), depth, session)
        return packet._replace(tunnel=tunnel)


class _KeepOuter:
    """What :meth:`Decoder._gre` and :meth:`Decoder._vxlan` answer for a payload they do not open: the
    outer packet is kept, as for any other protocol."""


_KEEP_OUTER = _KeepOuter()
