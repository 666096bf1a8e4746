"""What one CPython core can do per packet at the very least: the ceiling under any Python packet path.

Runs three loops over the records of a little-endian Ethernet pcap (the capture bench/build_capture.py
writes) and prints each one's packets/s, timed from the start of the file read:

- ``read``: walk the records (one ``struct.unpack_from`` of the record header and a slice per packet);
- ``headers``: also unpack Ethernet, IPv4, TCP and the Modbus MBAP header in one ``unpack_from`` at fixed
  offsets (no VLAN, no IP or TCP options: exactly the bench capture's frames);
- ``count``: also count packets per TCP 4-tuple in a dict and Modbus function codes in a list.
- ``pairing``: the least a Modbus monitor does per packet, with nothing else: per direction, check that
  the TCP sequence number continues the stream; take a segment that holds exactly one ADU of a valid
  MBAP header; look its request PDU up in a memo (parsed once per distinct bytes, as the sensor does);
  pair requests with responses by (flow, transaction id, unit id); and keep each polled range's
  min/max register value (the inventory's register map). It leaves alone, and counts, every packet
  that needs more (out of order, several or split ADUs, OPC UA, IP or TCP options): about 10% of the
  bench capture, which a real path must still process.

None of them validates headers, reassembles TCP, keeps flow records, statistics or an inventory: they
are what the issue's throughput target must be measured against, not a sensor. bench/throughput.py runs
this file as its own process next to ``zonewarden replay``.

Usage: ``python bench/ceiling.py CAPTURE [--loop read|headers|count|pairing]`` (default: all four).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path
from typing import Any

RECORD = struct.Struct("<8xI4x")  # pcap record header: ts_sec, ts_usec, incl_len, orig_len
# Ethernet type; IPv4 version/IHL, protocol, addresses; TCP ports, sequence, data offset
HEADERS = struct.Struct("!12xHB8xB2x4s4sHHI4xB")
MBAP = struct.Struct("!HHHBB")  # transaction, protocol, length, unit, function
ETHERNET_IPV4_TCP = 14 + 20 + 20


def loop_read(data: bytes) -> int:
    unpack = RECORD.unpack_from
    offset, packets, end = 24, 0, len(data) - 16
    while offset <= end:
        (captured,) = unpack(data, offset)
        offset += 16
        _frame = data[offset : offset + captured]
        offset += captured
        packets += 1
    return packets


def loop_headers(data: bytes, count: bool) -> int:
    record, headers, mbap = RECORD.unpack_from, HEADERS.unpack_from, MBAP.unpack_from
    flows: dict[tuple[bytes, int, bytes, int], int] = {}
    functions = [0] * 256
    offset, packets, end = 24, 0, len(data) - 16
    while offset <= end:
        (captured,) = record(data, offset)
        offset += 16
        if captured >= ETHERNET_IPV4_TCP:
            ethertype, version_ihl, proto, src, dst, sport, dport, _seq, data_offset = headers(data, offset)
            if ethertype == 0x0800 and version_ihl == 0x45 and proto == 6 and data_offset == 0x50:
                if count:
                    key = (src, sport, dst, dport)
                    flows[key] = flows.get(key, 0) + 1
                if captured >= ETHERNET_IPV4_TCP + MBAP.size:
                    _tid, _pid, _length, _unit, function = mbap(data, offset + ETHERNET_IPV4_TCP)
                    if count:
                        functions[function] += 1
        offset += captured
        packets += 1
    return packets


# Ethernet type, IPv4 version/IHL, total length, flags/fragment offset, protocol; the TCP 4-tuple is
# taken as bytes at 26..38; sequence number, data offset, flags
PAIRING_HEADERS = struct.Struct("!12xHBxHxxH xB 14x I 4x BB")
PAIRING_MBAP = struct.Struct("!HHHB")  # transaction, protocol, length, unit
REGISTERS = {n: struct.Struct(f"!{n}H") for n in range(126)}  # a read answer's 0..125 registers
SYN = 0x02


def loop_pairing(data: bytes) -> int:
    record, headers, mbap = RECORD.unpack_from, PAIRING_HEADERS.unpack_from, PAIRING_MBAP.unpack_from
    # 4-tuple bytes -> [next sequence number, transactions pending by (transaction id, unit)]; one entry
    # per direction, the pending table shared by the two directions of a connection
    streams: dict[bytes, list[Any]] = {}
    memo: dict[bytes, list[int]] = {}  # request PDU -> [function, min value read, max value read]
    requests, responses = [0] * 256, [0] * 256
    offset, packets, left, end = 24, 0, 0, len(data) - 16
    while offset <= end:
        (captured,) = record(data, offset)
        frame = offset + 16
        offset = frame + captured
        packets += 1
        if captured < ETHERNET_IPV4_TCP:
            left += 1
            continue
        ethertype, version_ihl, total, fragment, proto, seq, data_offset, flags = headers(data, frame)
        if (
            ethertype != 0x0800 or version_ihl != 0x45 or proto != 6 or fragment & 0x3FFF
            or data_offset != 0x50 or 14 + total > captured
        ):  # fmt: skip
            left += 1
            continue
        key = data[frame + 26 : frame + 38]
        stream = streams.get(key)
        if stream is None:  # a new direction: its first segment sets the sequence number
            back = data[frame + 30 : frame + 34] + data[frame + 26 : frame + 30]
            back += data[frame + 36 : frame + 38] + data[frame + 34 : frame + 36]
            other = streams.get(back)
            stream = streams[key] = [seq, other[1] if other is not None else {}]
        payload = total - 40
        if flags & SYN:
            stream[0] = (seq + 1) & 0xFFFFFFFF
            continue
        if seq != stream[0]:
            left += 1
            continue
        stream[0] = (seq + payload) & 0xFFFFFFFF
        if payload < 8:
            continue
        adu = frame + ETHERNET_IPV4_TCP
        transaction, protocol, length, unit = mbap(data, adu)
        if protocol or length + 6 != payload:
            left += 1
            continue
        function = data[adu + 7]
        pending = stream[1]
        if key[10:] == b"\x01\xf6":  # to port 502: a request
            pdu = data[adu + 7 : adu + 6 + length]
            known = memo.get(pdu)
            if known is None:
                if len(memo) >= 4096:
                    memo.clear()
                known = memo[pdu] = [function, 0xFFFF, 0]
            pending[transaction, unit] = known
            requests[function] += 1
        else:
            request = pending.pop((transaction, unit), None)
            if request is None:
                continue
            responses[function] += 1
            if function in (3, 4) and request[0] == function:
                values = REGISTERS[min(data[adu + 8] // 2, 125)].unpack_from(data, adu + 9)
                if values:
                    low, high = min(values), max(values)
                    if low < request[1]:
                        request[1] = low
                    if high > request[2]:
                        request[2] = high
    print(f"pairing left {left} packets ({left / max(packets, 1):.1%}) that need more than this loop does")
    return packets


LOOPS = {
    "read": loop_read,
    "headers": lambda data: loop_headers(data, count=False),
    "count": lambda data: loop_headers(data, count=True),
    "pairing": loop_pairing,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--loop", choices=sorted(LOOPS), action="append")
    args = parser.parse_args(argv)
    for name in args.loop or list(LOOPS):
        started = time.perf_counter()
        data = args.capture.read_bytes()
        if data[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack_from("<I", data, 20)[0] != 1:
            print(f"{args.capture}: not a little-endian Ethernet pcap", file=sys.stderr)
            return 2
        packets = LOOPS[name](data)
        elapsed = time.perf_counter() - started
        print(f"{name:<8} {packets} packets in {elapsed:.3f} s: {packets / elapsed:,.0f} packets/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
