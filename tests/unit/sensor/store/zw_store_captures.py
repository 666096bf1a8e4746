"""A fast raw pcap writer for store tests: many short Modbus/TCP connections that each end (FIN), so
flow summaries and batch commits happen all along a replay (scapy would take minutes for this size)."""

from __future__ import annotations

import struct
from pathlib import Path

ETHERTYPE_IPV4 = 0x0800
SYN, FIN, PSH, ACK = 0x02, 0x01, 0x08, 0x10


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _frame(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack(">H", _ip_checksum(ip)) + ip[12:]
    eth = bytes.fromhex("00163e000002") + bytes.fromhex("00163e000001") + struct.pack(">H", ETHERTYPE_IPV4)
    return eth + ip + tcp


def write_many_modbus_flows(
    out: Path, flows: int, clients: int = 20, servers: int = 5, spacing: float = 1.0
) -> None:
    """``flows`` connections (handshake, one FC3 read and its answer, FIN both ways) from ``clients``
    hosts 10.50.0.x to ``servers`` hosts 10.60.0.x, one starting every ``spacing`` seconds."""
    records = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    t = 1_700_000_000.0
    for i in range(flows):
        c = bytes([10, 50, 0, 1 + i % clients])
        s = bytes([10, 60, 0, 1 + (i // clients) % servers])
        cport = 1024 + i % 60000
        tid = i & 0xFFFF
        request = struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, 100, 4)
        response = struct.pack(">HHHBBB4H", tid, 0, 11, 1, 3, 8, i & 0xFFFF, 2, 3, 4)
        cs, ss = 1000, 5000
        packets = [
            (True, cs, 0, SYN, b""),
            (False, ss, cs + 1, SYN | ACK, b""),
            (True, cs + 1, ss + 1, ACK, b""),
            (True, cs + 1, ss + 1, PSH | ACK, request),
            (False, ss + 1, cs + 1 + len(request), PSH | ACK, response),
            (True, cs + 1 + len(request), ss + 1 + len(response), FIN | ACK, b""),
            (False, ss + 1 + len(response), cs + 2 + len(request), FIN | ACK, b""),
            (True, cs + 2 + len(request), ss + 2 + len(response), ACK, b""),
        ]
        for n, (to_server, seq, ack, flags, payload) in enumerate(packets):
            if to_server:
                frame = _frame(c, s, cport, 502, seq, ack, flags, payload)
            else:
                frame = _frame(s, c, 502, cport, seq, ack, flags, payload)
            ts = t + i * spacing + n * 0.001
            sec = int(ts)
            records.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
    out.write_bytes(b"".join(records))
