"""Pure parsers for the unencrypted part of TLS: records, handshake headers, hellos, certificates, alerts.

Record (RFC 5246 §6.2.1, RFC 8446 §5.1)::

    +--------------+-------------------+--------------+----------------------+
    | type (1)     | legacy version (2) | length (2)   | fragment (length)    |
    +--------------+-------------------+--------------+----------------------+

Handshake message (RFC 8446 §4)::

    +--------------+------------------+------------------------------+
    | msg_type (1) | length (3)       | body (length)                |
    +--------------+------------------+------------------------------+

A handshake message may span several records, and a record may hold several messages; the session
reassembles, these functions see one whole message. They raise only Truncated/Malformed.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from sensor.dissectors.base import Reader
from sensor.dissectors.tls import codes
from sensor.errors import Malformed, Truncated

# RFC 8446 §5.2: a TLSCiphertext fragment is at most 2^14 + 256 bytes; RFC 5246 §6.2.3 allowed
# 2^14 + 2048. Anything larger is not TLS.
MAX_RECORD_LENGTH = 16384 + 2048
RECORD_HEADER = 5
HANDSHAKE_HEADER = 4
# Names and lists copied into events are bounded (hostile input G2).
MAX_LIST_ITEMS = 64
MAX_NAME_CHARS = 256


class RecordHeader(NamedTuple):
    content_type: int
    version: int
    length: int


class ClientHello(NamedTuple):
    legacy_version: int
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]  # extension types in wire order
    sni: str
    alpn: tuple[str, ...]
    supported_versions: tuple[int, ...]
    groups: tuple[int, ...]
    ec_point_formats: tuple[int, ...]

    def ja3(self) -> str:
        """JA3 string (salesforce/ja3 README): version,ciphers,extensions,groups,formats; GREASE dropped."""

        def join(values: tuple[int, ...]) -> str:
            return "-".join(str(v) for v in values if not codes.is_grease(v))

        return ",".join(
            [
                str(self.legacy_version),
                join(self.cipher_suites),
                join(self.extensions),
                join(self.groups),
                join(self.ec_point_formats),
            ]
        )


class ServerHello(NamedTuple):
    legacy_version: int
    cipher_suite: int
    extensions: tuple[int, ...]
    selected_version: int  # supported_versions extension (TLS 1.3), else legacy_version
    alpn: str
    hello_retry: bool  # HelloRetryRequest (RFC 8446 §4.1.3)

    def ja3s(self) -> str:
        return f"{self.legacy_version},{self.cipher_suite},{'-'.join(str(e) for e in self.extensions)}"


class Alert(NamedTuple):
    level: int
    description: int


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def parse_record_header(buf: bytes | bytearray, pos: int = 0) -> RecordHeader:
    """Record header at ``buf[pos:]``: type 20-24, major version 3, length within RFC limits."""
    if pos + RECORD_HEADER > len(buf):
        raise Truncated("record header")
    content_type = buf[pos]
    version = (buf[pos + 1] << 8) | buf[pos + 2]
    length = (buf[pos + 3] << 8) | buf[pos + 4]
    if content_type not in codes.RECORD_TYPE_NAMES:
        raise Malformed("bad_record_type", f"content type {content_type}")
    if buf[pos + 1] != 3 or buf[pos + 2] > 4:
        raise Malformed("bad_record_version", f"0x{version:04x}")
    if length > MAX_RECORD_LENGTH:
        raise Malformed("record_too_long", f"{length} bytes")
    return RecordHeader(content_type, version, length)


def parse_handshake_header(buf: bytes | bytearray, pos: int = 0) -> tuple[int, int]:
    """(msg_type, body length) of the handshake message at ``buf[pos:]``."""
    if pos + HANDSHAKE_HEADER > len(buf):
        raise Truncated("handshake header")
    return buf[pos], (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]


def _u16_list(r: Reader, length: int) -> tuple[int, ...]:
    if length % 2:
        raise Malformed("odd_length", f"u16 list of {length} bytes")
    sub = r.sub(length)
    return tuple(sub.u16be() for _ in range(length // 2))


def _text(raw: bytes) -> str:
    return raw[:MAX_NAME_CHARS].decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _parse_sni(r: Reader) -> str:
    """server_name (RFC 6066 §3): list of (type, name); the host_name (type 0) is kept."""
    names = r.sub(r.u16be())
    while names.remaining:
        name_type = names.u8()
        raw = names.bytes(names.u16be())
        if name_type == 0:
            return _text(raw)
    return ""


def _parse_alpn(r: Reader) -> tuple[str, ...]:
    """application_layer_protocol_negotiation (RFC 7301 §3.1): u16 list of u8-length names."""
    protos = r.sub(r.u16be())
    out: list[str] = []
    while protos.remaining:
        raw = protos.bytes(protos.u8())
        if len(out) < MAX_LIST_ITEMS:
            out.append(_text(raw))
    return tuple(out)


def parse_client_hello(r: Reader) -> ClientHello:
    """ClientHello (RFC 5246 §7.4.1.2, RFC 8446 §4.1.2).

    ```
    | legacy_version 2 | random 32 | session_id <0..32> | cipher_suites <2..2^16-2> |
    | compression_methods <1..2^8-1> | extensions <0..2^16-1> (optional before TLS 1.2) |
    ```
    """
    version = r.u16be()
    r.skip(32)
    sid_len = r.u8()
    if sid_len > 32:
        raise Malformed("bad_session_id", f"{sid_len} bytes")
    r.skip(sid_len)
    suites = _u16_list(r, r.u16be())
    r.skip(r.u8())  # compression methods
    exts: list[int] = []
    sni = ""
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    formats: tuple[int, ...] = ()
    if r.remaining:
        er = r.sub(r.u16be())
        while er.remaining:
            etype = er.u16be()
            body = er.sub(er.u16be())
            if len(exts) < MAX_LIST_ITEMS * 2:
                exts.append(etype)
            if etype == codes.EXT_SERVER_NAME and body.remaining:
                sni = _parse_sni(body)
            elif etype == codes.EXT_ALPN:
                alpn = _parse_alpn(body)
            elif etype == codes.EXT_SUPPORTED_VERSIONS:
                versions = _u8_len_u16_list(body)
            elif etype == codes.EXT_SUPPORTED_GROUPS:
                groups = _u16_list(body, body.u16be())
            elif etype == codes.EXT_EC_POINT_FORMATS:
                formats = tuple(body.bytes(body.u8()))
    return ClientHello(version, suites, tuple(exts), sni, alpn, versions, groups, formats)


def _u8_len_u16_list(r: Reader) -> tuple[int, ...]:
    return _u16_list(r, r.u8())


def parse_server_hello(r: Reader) -> ServerHello:
    """ServerHello (RFC 5246 §7.4.1.3, RFC 8446 §4.1.3): the version and cipher suite chosen."""
    version = r.u16be()
    random = r.bytes(32)
    r.skip(r.u8())  # legacy_session_id_echo
    suite = r.u16be()
    r.u8()  # compression
    exts: list[int] = []
    selected = version
    alpn = ""
    if r.remaining:
        er = r.sub(r.u16be())
        while er.remaining:
            etype = er.u16be()
            body = er.sub(er.u16be())
            if len(exts) < MAX_LIST_ITEMS * 2:
                exts.append(etype)
            if etype == codes.EXT_SUPPORTED_VERSIONS and body.remaining >= 2:
                selected = body.u16be()
            elif etype == codes.EXT_ALPN and body.remaining:
                names = _parse_alpn(body)
                alpn = names[0] if names else ""
    return ServerHello(version, suite, tuple(exts), selected, alpn, random == codes.HELLO_RETRY_RANDOM)


def parse_certificate_list(r: Reader, max_certs: int) -> tuple[list[bytes], int]:
    """Certificate (RFC 5246 §7.4.2): u24 list of u24-length DER certificates, leaf first.

    Returns (the first ``max_certs`` DER blobs, how many there were in all).
    """
    chain = r.sub(_u24(r))
    out: list[bytes] = []
    total = 0
    while chain.remaining:
        n = _u24(chain)
        total += 1
        if len(out) < max_certs:
            out.append(chain.bytes(n))
        else:
            chain.skip(n)
    return out, total


def _u24(r: Reader) -> int:
    hi = r.u8()
    return (hi << 16) | r.u16be()


def parse_alerts(payload: bytes) -> list[Alert]:
    """Alert records (RFC 5246 §7.2): (level, description) pairs; plaintext only."""
    if len(payload) % 2:
        raise Malformed("bad_alert", f"{len(payload)} bytes")
    return [Alert(payload[i], payload[i + 1]) for i in range(0, min(len(payload), 2 * MAX_LIST_ITEMS), 2)]
