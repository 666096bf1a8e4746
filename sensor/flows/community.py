"""Community ID flow hashing, version 1 (Corelight "Community ID Flow Hashing" specification).

The hash input, for TCP/UDP/SCTP and the port-less protocols alike::

    +-----------+---------+---------+-------+-----+-----------+-----------+
    | seed u16  | saddr   | daddr   | proto | pad | sport u16 | dport u16 |
    | (BE)      | 4 / 16B | 4 / 16B | u8    | 0   | (BE)      | (BE)      |
    +-----------+---------+---------+-------+-----+-----------+-----------+

with the endpoints ordered so that the smaller (address, port) comes first, which makes both
directions of a flow hash alike. The result is ``"1:" + base64(sha1(input))``.

ICMP (1) and ICMPv6 (58) carry type and code in the port positions; request/reply types are mapped
to their counterpart so that a request and its reply share an id, and one-way types are never
reordered. Protocols without ports hash the addresses and protocol only (no port words).
"""

from __future__ import annotations

import base64
import hashlib
import struct

_PROTO_ICMP = 1
_PROTO_ICMPV6 = 58
_PORTED = frozenset((6, 17, 132))  # TCP, UDP, SCTP

# request <-> reply counterparts (spec: "ICMP type/code mapping")
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_PAIRS = {
    128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135,
    130: 131, 131: 130, 139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip


def community_id(saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID v1 of a flow given as packed addresses; for ICMP pass type and code as ports."""
    one_way = False
    if proto in (_PROTO_ICMP, _PROTO_ICMPV6):
        pairs = _ICMP4_PAIRS if proto == _PROTO_ICMP else _ICMP6_PAIRS
        icmp_type, code = sport, dport
        sport = icmp_type
        if icmp_type in pairs:
            dport = pairs[icmp_type]
        else:
            dport = code
            one_way = True
    if not (one_way or saddr < daddr or (saddr == daddr and sport < dport)):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    parts = [struct.pack("!H", seed & 0xFFFF), saddr, daddr, struct.pack("!BB", proto & 0xFF, 0)]
    if proto in _PORTED or proto in (_PROTO_ICMP, _PROTO_ICMPV6):
        parts.append(struct.pack("!HH", sport & 0xFFFF, dport & 0xFFFF))
    digest = hashlib.sha1(b"".join(parts), usedforsecurity=False).digest()
    return "1:" + base64.b64encode(digest).decode("ascii")
