"""Test helpers for the Modbus dissector: vectors, feeding strategies, a tiny pcap replayer.

The replayer stands in for the real pipeline where the tests must not depend on it: it reads
classic pcap (and pcapng through scapy), decodes Ethernet/VLAN/IPv4/IPv6/TCP, takes the port-502
side as the server (as tshark does), orders each direction by sequence number, drops retransmitted
bytes, reports holes as gaps, and feeds one ModbusSession per TCP connection.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sensor.dissectors.modbus import ModbusSession, ModbusStats
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import AppEvent, FlowRef

REPO = Path(__file__).resolve().parents[5]
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"
SAMPLES = REPO / "pcaps"

FLOW = FlowRef(1, "1:test", "tcp", "10.0.0.1", 40000, "10.0.0.2", 502)


def adu(tid: int, unit: int, pdu: bytes, pid: int = 0, length: int | None = None) -> bytes:
    """An MBAP header + PDU; ``length`` overrides the computed MBAP length."""
    return struct.pack(">HHHB", tid, pid, len(pdu) + 1 if length is None else length, unit) + pdu


def session(limits: Limits = DEFAULT_LIMITS) -> ModbusSession:
    return ModbusSession(FLOW, limits)


def feed_chunks(
    chunks: Sequence[tuple[bool, bytes]], limits: Limits = DEFAULT_LIMITS, close: bool = False
) -> list[AppEvent]:
    s = session(limits)
    out: list[AppEvent] = []
    for i, (to_server, data) in enumerate(chunks):
        out.extend(s.feed(data, to_server, float(i)))
    if close:
        out.extend(s.close(float(len(chunks))))
    return out


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = [0, *sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def strip_ts(events: Sequence[AppEvent]) -> list[Any]:
    """Events without their packet time (which depends on how the bytes were chunked)."""
    out: list[Any] = []
    for e in events:
        body = e.eve_body()
        inner = next(iter(body.values()))
        if isinstance(inner, dict):
            inner = {k: v for k, v in inner.items() if not k.endswith("_ts")}
        out.append((type(e).__name__, getattr(e, "kind", None), inner))
    return out


def feed_ways(messages: Sequence[tuple[bool, bytes]], seed: int = 7) -> dict[str, list[Any]]:
    """Feed a conversation whole, byte by byte, in k random splits, and with a partial trailing ADU;
    return the events (without times) of each way."""
    rng = random.Random(seed)
    ways: dict[str, list[tuple[bool, bytes]]] = {
        "whole": list(messages),
        "bytewise": [(d, data[i : i + 1]) for d, data in messages for i in range(len(data))],
        "random": [
            (d, piece)
            for d, data in messages
            for piece in split(
                data, [rng.randrange(1, max(len(data), 2)) for _ in range(rng.randrange(1, 5))]
            )
        ],
        "trailing": [
            *messages,
            (True, adu(0xFFFF, 1, b"\x03\x00\x00\x00\x01")[:5]),
            (False, b"\x00\x01\x00"),
        ],
    }
    return {name: strip_ts(feed_chunks(chunks)) for name, chunks in ways.items()}


# --- pcap replay -------------------------------------------------------------------------------


def _frames(path: Path) -> Iterator[tuple[float, int, bytes]]:
    data = path.read_bytes()
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        from scapy.utils import PcapNgReader

        with PcapNgReader(str(path)) as reader:
            for pkt in reader:
                yield float(pkt.time), 1, bytes(pkt)
        return
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a pcap")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    rec = struct.Struct(endian + "IIII")
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _orig = rec.unpack_from(data, pos)
        pos += 16
        yield sec + frac / (1e9 if nano else 1e6), linktype, data[pos : pos + incl]
        pos += incl


def _tcp(linktype: int, frame: bytes) -> tuple[str, int, str, int, int, int, bytes] | None:
    import ipaddress

    if linktype == 1:
        etype, p = struct.unpack_from(">H", frame, 12)[0], 14
        while etype in (0x8100, 0x88A8):
            etype, p = struct.unpack_from(">H", frame, p + 2)[0], p + 4
    elif linktype == 0:
        family = struct.unpack_from("<I", frame, 0)[0]
        etype, p = (0x0800 if family == 2 else 0x86DD), 4
    else:
        return None
    if etype == 0x0800:
        ihl = (frame[p] & 0x0F) * 4
        total = struct.unpack_from(">H", frame, p + 2)[0]
        if frame[p + 9] != 6:
            return None
        src, dst = (
            str(ipaddress.ip_address(frame[p + 12 : p + 16])),
            str(ipaddress.ip_address(frame[p + 16 : p + 20])),
        )
        end, p = p + total, p + ihl
    elif etype == 0x86DD:
        plen = struct.unpack_from(">H", frame, p + 4)[0]
        if frame[p + 6] != 6:
            return None
        src, dst = (
            str(ipaddress.ip_address(frame[p + 8 : p + 24])),
            str(ipaddress.ip_address(frame[p + 24 : p + 40])),
        )
        end, p = p + 40 + plen, p + 40
    else:
        return None
    sport, dport, seq = struct.unpack_from(">HHI", frame, p)
    flags = frame[p + 13]
    off = (frame[p + 12] >> 4) * 4
    return src, sport, dst, dport, seq, flags, frame[p + off : end]


def replay_pcap(path: Path, limits: Limits = DEFAULT_LIMITS) -> list[AppEvent]:
    """Every Modbus event of a capture, one session per TCP connection with port 502 on one side."""
    sessions: dict[tuple[str, int, str, int], ModbusSession] = {}
    next_seq: dict[tuple[tuple[str, int, str, int], bool], int] = {}
    events: list[AppEvent] = []
    ts = 0.0
    for ts, linktype, frame in _frames(path):
        t = _tcp(linktype, frame)
        if t is None:
            continue
        src, sport, dst, dport, seq, flags, payload = t
        if dport == 502:
            key, to_server = (src, sport, dst, dport), True
        elif sport == 502:
            key, to_server = (dst, dport, src, sport), False
        else:
            continue
        dkey = (key, to_server)
        if flags & 0x02:  # SYN
            next_seq[dkey] = (seq + 1) & 0xFFFFFFFF
            continue
        if not payload:
            continue
        s = sessions.get(key)
        if s is None:
            flow = FlowRef(len(sessions) + 1, "", "tcp", key[0], key[1], key[2], key[3])
            s = sessions[key] = ModbusSession(flow, limits)
        expected = next_seq.get(dkey)
        if expected is not None:
            ahead = (seq - expected) & 0xFFFFFFFF
            if ahead and ahead < 1 << 31:
                events.extend(s.gap(to_server, ahead, ts))
            elif ahead:
                overlap = (expected - seq) & 0xFFFFFFFF
                if overlap >= len(payload):
                    continue  # retransmission
                payload, seq = payload[overlap:], expected
        next_seq[dkey] = (seq + len(payload)) & 0xFFFFFFFF
        events.extend(s.feed(payload, to_server, ts))
    for s in sessions.values():
        events.extend(s.close(ts))
    return events


def summarize(events: Sequence[AppEvent]) -> dict[str, Any]:
    stats = ModbusStats()
    for e in events:
        stats.observe(e)
    return stats.section()
