"""DNP3 link-layer frames for tests that need traffic only tshark names (importable from any test)."""

from __future__ import annotations

import struct


def crc_dnp(data: bytes) -> bytes:
    """CRC-16/DNP (IEEE 1815-2012 §9.2.4.1.3 / §9.2.4.2.3): poly 0x3D65 reflected, init 0, xorout 0xFFFF."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
    return struct.pack("<H", crc ^ 0xFFFF)


def dnp3_frame(control: int, destination: int, source: int, user_data: bytes) -> bytes:
    """A DNP3 link-layer frame (IEEE 1815-2012 §9.2.4).

    +------+------+-----+---------+-----+-----+-----+ +------------+-----+ ...
    | 0x05 | 0x64 | LEN | CONTROL | DST | SRC | CRC | | data <= 16 | CRC |
    +------+------+-----+---------+-----+-----+-----+ +------------+-----+
    LEN counts CONTROL, DST, SRC and the user data, not the CRCs.
    """
    header = bytes([0x05, 0x64, 5 + len(user_data), control]) + struct.pack("<HH", destination, source)
    frame = header + crc_dnp(header)
    for offset in range(0, len(user_data), 16):
        block = user_data[offset : offset + 16]
        frame += block + crc_dnp(block)
    return frame
