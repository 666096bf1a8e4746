"""UA-TCP transport and UA Secure Conversation headers (OPC 10000-6 §7.1, §6.7).

Pure functions over a :class:`~sensor.dissectors.base.Reader`; they raise only ``Truncated`` or
``Malformed``. Everything is little-endian.

Message header (every message, §7.1.2.2)::

    +--------+--------+--------+--------+--------+--------+--------+--------+
    |      MessageType (3 ASCII)       | Chunk  |       MessageSize (UInt32)          |
    |   HEL ACK ERR RHE OPN MSG CLO    | F C A  |  whole chunk, header included       |
    +--------+--------+--------+--------+--------+--------+--------+--------+

OPN chunk (§6.7.2.3, asymmetric security header)::

    header(8) | SecureChannelId u32 | SecurityPolicyUri String | SenderCertificate ByteString
              | ReceiverCertificateThumbprint ByteString | SequenceNumber u32 | RequestId u32 | body

MSG / CLO chunk (§6.7.2.4, symmetric security header)::

    header(8) | SecureChannelId u32 | TokenId u32 | SequenceNumber u32 | RequestId u32 | body
              [| padding | signature]

With SignAndEncrypt everything after the TokenId is encrypted (§6.7.2.5); with Sign a signature
trails each chunk.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from sensor.dissectors.base import Reader
from sensor.dissectors.opcua.codes import CHUNK_TYPES, HEADER_SIZE, MESSAGE_TYPES
from sensor.errors import Malformed, Truncated

_HEADER = struct.Struct("<3scI")


class MessageHeader(NamedTuple):
    message_type: bytes  # b"HEL", b"MSG", ...
    chunk_type: int  # ord("F") / ord("C") / ord("A")
    size: int  # whole chunk including these 8 bytes


def parse_message_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> MessageHeader:
    """The 8-byte header at ``pos`` (§7.1.2.2). Malformed: unknown type (U11), chunk type not F/C/A,
    MessageSize < 8 (U1). The caller enforces the upper bound (U2), which depends on the flow."""
    if len(buf) - pos < HEADER_SIZE:
        raise Truncated("message header")
    mtype, chunk, size = _HEADER.unpack_from(buf, pos)
    if mtype not in MESSAGE_TYPES:
        raise Malformed("unknown_message_type", repr(bytes(mtype))[:20])
    if chunk[0] not in CHUNK_TYPES:
        raise Malformed("bad_chunk_type", repr(chunk))
    if size < HEADER_SIZE:
        raise Malformed("bad_message_size", f"MessageSize {size}")
    return MessageHeader(bytes(mtype), chunk[0], size)


def _string(r: Reader, cap: int = 4096) -> str | None:
    """Int32-length UTF-8 String, -1 = null (§5.2.2.4); invalid UTF-8 replaced."""
    n = r.i32le()
    if n == -1:
        return None
    if n < 0:
        raise Malformed("bad_length", f"string length {n}")
    raw = r.bytes(n)
    return raw[:cap].decode("utf-8", "replace")


def _bytestring(r: Reader) -> bytes | None:
    n = r.i32le()
    if n == -1:
        return None
    if n < 0:
        raise Malformed("bad_length", f"bytestring length {n}")
    return r.bytes(n)


class Hello(NamedTuple):
    """HEL (§7.1.2.3): the client's buffer limits and the endpoint it wants."""

    protocol_version: int
    receive_buffer_size: int
    send_buffer_size: int
    max_message_size: int  # 0 = no limit
    max_chunk_count: int  # 0 = no limit
    endpoint_url: str | None


class Acknowledge(NamedTuple):
    """ACK (§7.1.2.4): the server's revised limits."""

    protocol_version: int
    receive_buffer_size: int
    send_buffer_size: int
    max_message_size: int
    max_chunk_count: int


class ErrorMessage(NamedTuple):
    """ERR (§7.1.2.5): a status code and a reason string (kept short, U11)."""

    error: int
    reason: str | None


class ReverseHello(NamedTuple):
    """RHE (§7.1.2.6): the server connected to the client (reverse connect)."""

    server_uri: str | None
    endpoint_url: str | None


def parse_hello(r: Reader) -> Hello:
    return Hello(r.u32le(), r.u32le(), r.u32le(), r.u32le(), r.u32le(), _string(r))


def parse_acknowledge(r: Reader) -> Acknowledge:
    return Acknowledge(r.u32le(), r.u32le(), r.u32le(), r.u32le(), r.u32le())


def parse_error(r: Reader, reason_cap: int = 256) -> ErrorMessage:
    code = r.u32le()
    n = r.i32le()
    if n == -1:
        return ErrorMessage(code, None)
    if n < 0:
        raise Malformed("bad_length", f"reason length {n}")
    # Only the kept part is copied; a 16 MB reason (U11) is bounded by the chunk size anyway.
    r.need(n)
    raw = bytes(r.buf[r.pos : r.pos + min(n, reason_cap * 4)])
    r.pos += n
    return ErrorMessage(code, raw.decode("utf-8", "replace")[:reason_cap])


def parse_reverse_hello(r: Reader) -> ReverseHello:
    return ReverseHello(_string(r), _string(r))


class AsymmetricHeader(NamedTuple):
    """OPN security header (§6.7.2.3)."""

    secure_channel_id: int
    security_policy_uri: str | None
    sender_certificate: bytes | None  # DER, possibly a chain of concatenated certificates
    receiver_thumbprint: bytes | None  # SHA-1 of the receiver's certificate


def parse_asymmetric_header(r: Reader) -> AsymmetricHeader:
    return AsymmetricHeader(r.u32le(), _string(r), _bytestring(r), _bytestring(r))


class SymmetricHeader(NamedTuple):
    """MSG/CLO security header (§6.7.2.4)."""

    secure_channel_id: int
    token_id: int


def parse_symmetric_header(r: Reader) -> SymmetricHeader:
    return SymmetricHeader(r.u32le(), r.u32le())


class SequenceHeader(NamedTuple):
    """Sequence header (§6.7.2.4): per-channel sequence number and the message's RequestId."""

    sequence_number: int
    request_id: int


def parse_sequence_header(r: Reader) -> SequenceHeader:
    return SequenceHeader(r.u32le(), r.u32le())
