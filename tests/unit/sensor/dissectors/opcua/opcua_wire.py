"""Builders of OPC UA Binary wire bytes for the OPC UA dissector tests (OPC 10000-6 §7.1, §6.7).

Service bodies come from asyncua's encoder (a real stack), the framing is built here by hand so that
tests can also build what no stack would send.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from asyncua import ua
from asyncua.ua.ua_binary import struct_to_binary

from sensor.records import FlowRef

FLOW = FlowRef(
    flow_id=1,
    community_id="1:test",
    transport="tcp",
    client_ip="10.0.0.1",
    client_port=50000,
    server_ip="10.0.0.2",
    server_port=4840,
)
POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"
POLICY_B256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
TS = 1_700_000_000.0


def s(text: str | None) -> bytes:
    if text is None:
        return struct.pack("<i", -1)
    raw = text.encode()
    return struct.pack("<i", len(raw)) + raw


def bs(data: bytes | None) -> bytes:
    if data is None:
        return struct.pack("<i", -1)
    return struct.pack("<i", len(data)) + data


def header(mtype: bytes, body: bytes, chunk: bytes = b"F") -> bytes:
    return mtype + chunk + struct.pack("<I", 8 + len(body)) + body


def hel(
    url: str = "opc.tcp://10.0.0.2:4840",
    recv: int = 65536,
    send: int = 65536,
    max_msg: int = 0,
    max_chunks: int = 0,
) -> bytes:
    return header(b"HEL", struct.pack("<IIIII", 0, recv, send, max_msg, max_chunks) + s(url))


def ack(recv: int = 65536, send: int = 65536, max_msg: int = 0, max_chunks: int = 0) -> bytes:
    return header(b"ACK", struct.pack("<IIIII", 0, recv, send, max_msg, max_chunks))


def err(code: int, reason: str) -> bytes:
    return header(b"ERR", struct.pack("<I", code) + s(reason))


def encode(obj: Any) -> bytes:
    """A service request/response as asyncua encodes it: TypeId NodeId then the structure."""
    return struct_to_binary(obj)  # type: ignore[no-any-return]


def opn(
    channel: int,
    seq: int,
    request_id: int,
    body: bytes,
    policy: str = POLICY_NONE,
    cert: bytes | None = None,
    thumb: bytes | None = None,
    chunk: bytes = b"F",
) -> bytes:
    asym = struct.pack("<I", channel) + s(policy) + bs(cert) + bs(thumb)
    return header(b"OPN", asym + struct.pack("<II", seq, request_id) + body, chunk)


def msg(
    channel: int,
    seq: int,
    request_id: int,
    body: bytes,
    chunk: bytes = b"F",
    mtype: bytes = b"MSG",
    token: int = 1,
) -> bytes:
    return header(mtype, struct.pack("<IIII", channel, token, seq, request_id) + body, chunk)


def chunks_of(channel: int, first_seq: int, request_id: int, body: bytes, size: int) -> list[bytes]:
    """Split a body into MSG chunks of at most ``size`` body bytes: C ... C F."""
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    out = []
    for i, part in enumerate(parts):
        out.append(msg(channel, first_seq + i, request_id, part, b"F" if i == len(parts) - 1 else b"C"))
    return out


def opn_request(handle: int = 1, mode: int = 1) -> bytes:
    r = ua.OpenSecureChannelRequest()
    r.RequestHeader.RequestHandle = handle
    r.Parameters.RequestType = ua.SecurityTokenRequestType.Issue
    r.Parameters.SecurityMode = ua.MessageSecurityMode(mode)
    r.Parameters.RequestedLifetime = 3600000
    return encode(r)


def opn_response(channel: int, handle: int = 1) -> bytes:
    r = ua.OpenSecureChannelResponse()
    r.ResponseHeader.RequestHandle = handle
    r.Parameters.SecurityToken.ChannelId = channel
    r.Parameters.SecurityToken.TokenId = 1
    r.Parameters.SecurityToken.RevisedLifetime = 3600000
    return encode(r)


def read_request(handle: int, nodes: Sequence[ua.NodeId]) -> bytes:
    r = ua.ReadRequest()
    r.RequestHeader.RequestHandle = handle
    r.Parameters.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=13) for n in nodes]
    return encode(r)


def read_response(handle: int, values: Sequence[ua.Variant]) -> bytes:
    r = ua.ReadResponse()
    r.ResponseHeader.RequestHandle = handle
    r.Results = [ua.DataValue(Value=v) for v in values]
    return encode(r)


def conversation(channel: int = 7) -> list[tuple[bool, bytes]]:
    """HEL/ACK, OPN (None), one Read pair, CLO: (to_server, bytes) in wire order."""
    return [
        (True, hel()),
        (False, ack()),
        (True, opn(0, 1, 1, opn_request())),
        (False, opn(channel, 1, 1, opn_response(channel))),
        (True, msg(channel, 2, 2, read_request(11, [ua.NodeId(2258, 0), ua.NodeId("Temp", 2)]))),
        (
            False,
            msg(
                channel,
                2,
                2,
                read_response(
                    11, [ua.Variant(1.5, ua.VariantType.Double), ua.Variant("ok", ua.VariantType.String)]
                ),
            ),
        ),
        (True, msg(channel, 3, 3, encode(ua.CloseSecureChannelRequest()), mtype=b"CLO")),
    ]


TRAILER = b"MSGF\x40\x00"  # the start of another chunk that never completes


def new_session(limits: Any = None) -> Any:
    from sensor.dissectors.opcua import OpcUaDissector
    from sensor.limits import DEFAULT_LIMITS

    return OpcUaDissector().session(FLOW, limits or DEFAULT_LIMITS)


def feed(
    items: Sequence[tuple[bool, bytes]], how: str = "whole", limits: Any = None, close: bool = True
) -> list[Any]:
    """Feed (to_server, bytes) items whole, byte by byte, or with trailing bytes; return all events."""
    sess = new_session(limits)
    events: list[Any] = []
    for to_server, data in items:
        if how == "bytes":
            for i in range(len(data)):
                events += sess.feed(data[i : i + 1], to_server, TS)
        else:
            events += sess.feed(data, to_server, TS)
    if how == "trailing":
        events += sess.feed(TRAILER, True, TS)
        events += sess.feed(TRAILER, False, TS)
    if close:
        events += sess.close(TS)
    return events


def feed_all_ways(items: Sequence[tuple[bool, bytes]], limits: Any = None) -> list[Any]:
    """The events of ``items``, asserting they are the same fed whole, byte by byte and with trailers."""
    whole = feed(items, "whole", limits)
    assert feed(items, "bytes", limits) == whole
    assert feed(items, "trailing", limits) == whole
    return whole


def kinds(events: Sequence[Any]) -> list[str]:
    return [e.kind for e in events if type(e).__name__ == "ProtocolAnomaly"]


def messages(events: Sequence[Any]) -> list[Any]:
    return [e for e in events if type(e).__name__ == "OpcUaMessage"]


def make_cert(
    uri: str = "urn:test:app",
    key_size: int = 2048,
    days_from: float = -1,
    days_to: float = 365,
    at: float = TS,
) -> bytes:
    """A self-signed DER certificate with SAN URI ``uri``, valid ``days_from``..``days_to`` around ``at``."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = _KEYS.get(key_size)
    if key is None:
        key = _KEYS[key_size] = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    base = datetime.datetime.fromtimestamp(at, datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1234)
        .not_valid_before(base + datetime.timedelta(days=days_from))
        .not_valid_after(base + datetime.timedelta(days=days_to))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


_KEYS: dict[int, Any] = {}
