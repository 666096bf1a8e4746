"""UA-TCP and secure-conversation headers (OPC 10000-6 §7.1.2, §6.7.2)."""

from __future__ import annotations

import struct

import pytest

from sensor.dissectors.base import Reader
from sensor.dissectors.opcua.frames import (
    parse_acknowledge,
    parse_asymmetric_header,
    parse_error,
    parse_hello,
    parse_message_header,
    parse_reverse_hello,
    parse_sequence_header,
    parse_symmetric_header,
)
from sensor.errors import Malformed, Truncated

# A Hello as open62541 sends it (opcua-open62541-mainloop.pcap frame 6): version 0, buffers 65535,
# no message/chunk limits, endpoint opc.tcp://localhost:4840.
HEL_OPEN62541 = (
    bytes.fromhex("48454c463800000000000000ffff0000ffff0000000000000000000018000000")
    + b"opc.tcp://localhost:4840"
)


def test_message_header_worked_example() -> None:
    hdr = parse_message_header(HEL_OPEN62541)
    assert hdr.message_type == b"HEL"
    assert hdr.chunk_type == ord("F")
    assert hdr.size == 0x38 == len(HEL_OPEN62541)


def test_message_header_at_offset_and_truncated() -> None:
    assert parse_message_header(b"xx" + HEL_OPEN62541, 2).size == 0x38
    with pytest.raises(Truncated):
        parse_message_header(HEL_OPEN62541[:7])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"XYZF\x10\x00\x00\x00", "unknown_message_type"),
        (b"MSGX\x10\x00\x00\x00", "bad_chunk_type"),
        (b"MSGF\x07\x00\x00\x00", "bad_message_size"),
        (b"HELF\x00\x00\x00\x00", "bad_message_size"),
    ],
)
def test_message_header_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as exc:
        parse_message_header(data)
    assert exc.value.reason == reason


def test_hello_fields() -> None:
    hel = parse_hello(Reader(HEL_OPEN62541, 8))
    assert hel == (0, 65535, 65535, 0, 0, "opc.tcp://localhost:4840")


def test_hello_null_endpoint_url() -> None:
    hel = parse_hello(Reader(struct.pack("<IIIIIi", 0, 8192, 8192, 0, 0, -1)))
    assert hel.endpoint_url is None


def test_acknowledge_fields() -> None:
    assert parse_acknowledge(Reader(struct.pack("<IIIII", 0, 8192, 16384, 1 << 20, 5))) == (
        0,
        8192,
        16384,
        1 << 20,
        5,
    )


def test_error_reason_is_capped() -> None:
    body = struct.pack("<I", 0x80130000) + struct.pack("<i", 5000) + b"A" * 5000
    e = parse_error(Reader(body), reason_cap=64)
    assert e.error == 0x80130000
    assert e.reason == "A" * 64


def test_error_negative_reason_length() -> None:
    with pytest.raises(Malformed):
        parse_error(Reader(struct.pack("<Ii", 0x80130000, -7)))


def test_reverse_hello() -> None:
    body = struct.pack("<i", 8) + b"urn:srv1" + struct.pack("<i", 14) + b"opc.tcp://x:48"
    assert parse_reverse_hello(Reader(body)) == ("urn:srv1", "opc.tcp://x:48")


def test_asymmetric_header_with_null_certificate() -> None:
    uri = b"http://opcfoundation.org/UA/SecurityPolicy#None"
    body = struct.pack("<Ii", 0, len(uri)) + uri + struct.pack("<ii", -1, -1)
    hdr = parse_asymmetric_header(Reader(body))
    assert hdr.secure_channel_id == 0
    assert hdr.security_policy_uri == uri.decode()
    assert hdr.sender_certificate is None and hdr.receiver_thumbprint is None


def test_asymmetric_header_truncated_certificate() -> None:
    body = struct.pack("<Iii", 1, -1, 100) + b"\x30" * 10
    with pytest.raises(Truncated):
        parse_asymmetric_header(Reader(body))


def test_symmetric_and_sequence_headers() -> None:
    r = Reader(struct.pack("<IIII", 5, 9, 51, 7))
    assert parse_symmetric_header(r) == (5, 9)
    assert parse_sequence_header(r) == (51, 7)
