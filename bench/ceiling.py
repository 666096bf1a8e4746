"""What one CPython core can do per packet at the very least: the ceiling under any Python packet path.

Runs three loops over the records of a little-endian Ethernet pcap (the capture bench/build_capture.py
writes) and prints each one's packets/s, timed from the start of the file read:

- ``read``: walk the records (one ``struct.unpack_from`` of the record header and a slice per packet);
- ``headers``: also unpack Ethernet, IPv4, TCP and the Modbus MBAP header in one ``unpack_from`` at fixed
  offsets (no VLAN, no IP or TCP options: exactly the bench capture's frames);
- ``count``: also count packets per TCP 4-tuple in a dict and Modbus function codes in a list.

None of them validates anything, reassembles TCP, pairs requests with responses or keeps an inventory:
they are what the issue's throughput target must be measured against, not a sensor. bench/throughput.py
runs this file as its own process next to ``zonewarden replay``.

Usage: ``python bench/ceiling.py CAPTURE [--loop read|headers|count]`` (default: all three).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

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


LOOPS = {
    "read": loop_read,
    "headers": lambda data: loop_headers(data, count=False),
    "count": lambda data: loop_headers(data, count=True),
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
