"""Byte-exact builders for pcap and pcapng test captures (written with struct, no capture library).

Layouts: draft-ietf-opsawg-pcap §4-5 and draft-ietf-opsawg-pcapng §3-4.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from sensor.capture.file import FileSource, open_capture
from sensor.errors import CaptureError
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import Frame

# An Ethernet + IPv4 + TCP frame to port 502 carrying a Modbus read request (66 bytes).
ETH_TCP_502 = bytes.fromhex(
    "0200000000020200000000010800"  # Ethernet: dst, src, IPv4
    "45000034000140004006000c7f0000017f000002"  # IPv4 127.0.0.1 -> 127.0.0.2, TCP
    "9c4001f6000000010000000150182000c1a90000"  # TCP 40000 -> 502, PSH|ACK
    "000100000006010300000002"  # MBAP + FC3
)


def frame_bytes(i: int, size: int = 60) -> bytes:
    """A distinct frame body: the Modbus frame with its last bytes replaced by a counter."""
    if size < 4:
        return bytes([i & 0xFF]) * size
    return (ETH_TCP_502 + bytes(size))[: size - 4] + struct.pack(">I", i)


# --- classic pcap --------------------------------------------------------------------------------


def pcap_header(
    order: str = "<", nsec: bool = False, snaplen: int = 65535, linktype: int = 1, major: int = 2
) -> bytes:
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    return struct.pack(order + "IHHiIII", magic, major, 4, 0, 0, snaplen, linktype)


def pcap_record(
    order: str, sec: int, frac: int, data: bytes, wire_len: int | None = None, caplen: int | None = None
) -> bytes:
    return (
        struct.pack(
            order + "IIII",
            sec,
            frac,
            len(data) if caplen is None else caplen,
            len(data) if wire_len is None else wire_len,
        )
        + data
    )


def pcap_file(
    records: Iterable[tuple[int, int, bytes]],
    order: str = "<",
    nsec: bool = False,
    linktype: int = 1,
    snaplen: int = 65535,
) -> bytes:
    return pcap_header(order, nsec, snaplen, linktype) + b"".join(
        pcap_record(order, sec, frac, data) for sec, frac, data in records
    )


# --- pcapng --------------------------------------------------------------------------------------


def pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) & 3)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def end_of_options(order: str) -> bytes:
    return struct.pack(order + "HH", 0, 0)


def block(order: str, block_type: int, body: bytes) -> bytes:
    body = pad4(body)
    length = 12 + len(body)
    return struct.pack(order + "II", block_type, length) + body + struct.pack(order + "I", length)


def shb(order: str = "<", options: bytes = b"", major: int = 1) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1) + options)


def idb(
    order: str = "<",
    linktype: int = 1,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    options = b""
    if tsresol is not None:
        options += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        options += option(order, 14, struct.pack(order + "q", tsoffset))
    if options:
        options += end_of_options(order)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def epb(
    order: str,
    interface: int,
    ts_units: int,
    data: bytes,
    wire_len: int | None = None,
    options: bytes = b"",
) -> bytes:
    header = struct.pack(
        order + "IIIII",
        interface,
        ts_units >> 32,
        ts_units & 0xFFFFFFFF,
        len(data),
        len(data) if wire_len is None else wire_len,
    )
    return block(order, 6, header + pad4(data) + options)


def spb(order: str, data: bytes, wire_len: int | None = None) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data) if wire_len is None else wire_len) + data)


def obsolete_pb(order: str, interface: int, ts_units: int, data: bytes) -> bytes:
    header = struct.pack(
        order + "HHIIII", interface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), len(data)
    )
    return block(order, 2, header + data)


# --- reading -------------------------------------------------------------------------------------


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def read_all(path: Path, limits: Limits = DEFAULT_LIMITS) -> tuple[list[Frame], FileSource]:
    """All frames of a capture and its source (for counters and warnings)."""
    with open_capture(path, limits) as source:
        return list(source.frames()), source


def read_until_error(
    path: Path, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[Frame], CaptureError | None, FileSource | None]:
    """Frames yielded before a CaptureError (if any), the error, and the source."""
    frames: list[Frame] = []
    try:
        source = open_capture(path, limits)
    except CaptureError as exc:
        return frames, exc, None
    with source:
        try:
            frames.extend(source.frames())
        except CaptureError as exc:
            return frames, exc, source
    return frames, None, source


def assert_one_line(exc: BaseException, path: Path | str, *fragments: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message, message


def boundaries(chunks: Sequence[bytes]) -> list[int]:
    """Cumulative end offsets of concatenated chunks."""
    out, total = [], 0
    for chunk in chunks:
        total += len(chunk)
        out.append(total)
    return out
