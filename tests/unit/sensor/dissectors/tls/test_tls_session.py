"""TLS handshake metadata: hellos, certificates, alerts, reassembly, where parsing stops, probe."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sensor.dissectors.base import Reader
from sensor.dissectors.tls import TlsDissector, TlsHandshake, TlsSession
from sensor.dissectors.tls.frames import parse_client_hello, parse_server_hello
from sensor.errors import ParseError
from sensor.limits import Limits
from sensor.records import AppEvent, CertificateObservation, FlowRef, ProtocolAnomaly

FLOW = FlowRef(7, "1:tls", "tcp", "10.0.0.1", 50000, "10.0.0.2", 8883)
C, S = True, False


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def ext(etype: int, body: bytes) -> bytes:
    return u16(etype) + u16(len(body)) + body


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + u24(len(body)) + body


def record(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + u16(version) + u16(len(payload)) + payload


def client_hello(
    sni: str = "broker.plant.local", alpn: Sequence[bytes] = (b"mqtt",), tls13: bool = False
) -> bytes:
    exts = ext(0, u16(len(sni) + 3) + b"\x00" + u16(len(sni)) + sni.encode())
    names = b"".join(bytes([len(a)]) + a for a in alpn)
    exts += ext(16, u16(len(names)) + names)
    exts += ext(10, u16(4) + u16(0x001D) + u16(0x0017))
    exts += ext(11, b"\x01\x00")
    if tls13:
        exts += ext(43, b"\x04" + u16(0x0A0A) + u16(0x0304))
    suites = u16(0x0A0A) + u16(0x1301) + u16(0xC02F)
    body = (
        u16(0x0303) + b"\x11" * 32 + b"\x00" + u16(len(suites)) + suites + b"\x01\x00" + u16(len(exts)) + exts
    )
    return handshake(1, body)


def server_hello(suite: int = 0xC02F, tls13: bool = False, retry: bool = False) -> bytes:
    exts = ext(43, u16(0x0304)) if tls13 else ext(0xFF01, b"\x00")
    random = (
        bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
        if retry
        else b"\x22" * 32
    )
    body = u16(0x0303) + random + b"\x00" + u16(suite) + b"\x00" + u16(len(exts)) + exts
    return handshake(2, body)


def make_cert(cn: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


SERVER_DER = make_cert("broker.plant.local")
CLIENT_DER = make_cert("gateway-7")


def certificate_msg(*ders: bytes) -> bytes:
    entries = b"".join(u24(len(d)) + d for d in ders)
    return handshake(11, u24(len(entries)) + entries)


def tls12_flights() -> list[tuple[bool, bytes]]:
    server_flight = (
        server_hello()
        + certificate_msg(SERVER_DER)
        + handshake(13, b"\x01\x40\x00\x00\x00\x00")
        + handshake(14, b"")
    )
    return [
        (C, record(22, client_hello(), version=0x0301)),
        (S, record(22, server_flight)),
        (C, record(22, certificate_msg(CLIENT_DER) + handshake(16, b"\x41" + b"\x04" * 65))),
        (C, record(20, b"\x01")),
        (C, record(22, b"\x99" * 40)),  # encrypted Finished: must not be parsed
        (S, record(20, b"\x01")),
        (S, record(22, b"\x98" * 40)),
        (C, record(23, b"\x55" * 100)),
        (S, record(21, b"\x02\x30")),  # a plaintext 2-byte alert (unknown_ca)
    ]


def feed(session: TlsSession, chunks: Sequence[tuple[bool, bytes]]) -> list[AppEvent]:
    out: list[AppEvent] = []
    for to_server, data in chunks:
        out.extend(session.feed(data, to_server, 1.0))
    out.extend(session.close(2.0))
    return out


def view(events: Sequence[AppEvent]) -> list[str]:
    return [json.dumps(e.eve_body(), sort_keys=True) for e in events]


def split_invariant(chunks: list[tuple[bool, bytes]]) -> list[AppEvent]:
    whole = feed(TlsSession(FLOW, Limits()), chunks)
    by_byte = feed(TlsSession(FLOW, Limits()), [(d, b[i : i + 1]) for d, b in chunks for i in range(len(b))])
    trailing = feed(TlsSession(FLOW, Limits()), [*chunks, (chunks[-1][0], b"\x17\x03")])
    assert view(whole) == view(by_byte) == view(trailing)
    return whole


def test_tls12_full_handshake_every_piece_and_split_points() -> None:
    events = split_invariant(tls12_flights())
    hellos = [e for e in events if isinstance(e, TlsHandshake)]
    assert [h.message for h in hellos] == ["client_hello", "server_hello", "certificate_request", "alert"]
    ch, sh, _, alert = hellos
    assert ch.sni == "broker.plant.local" and ch.alpn == ("mqtt",)
    assert ch.ja3 == "771,4865-49199,0-16-10-11,29-23,0"  # GREASE dropped
    assert sh.version_name == "TLS 1.2" and not sh.certificates_hidden
    assert sh.eve_body()["tls"]["cipher_suite"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert alert.eve_body()["tls"]["alert"] == {"level": "fatal", "description": "unknown_ca", "code": 48}
    certs = [e for e in events if isinstance(e, CertificateObservation)]
    assert [(c.source, c.presenter_is_server, c.cert.subject) for c in certs] == [
        ("tls.server", True, "CN=broker.plant.local"),
        ("tls.client", False, "CN=gateway-7"),
    ]
    assert certs[0].der == SERVER_DER and certs[0].app_proto == "tls"
    assert not [e for e in events if isinstance(e, ProtocolAnomaly)]


def test_handshake_message_split_across_records() -> None:
    msg = server_hello() + certificate_msg(SERVER_DER)
    records = b"".join(record(22, msg[i : i + 100]) for i in range(0, len(msg), 100))
    events = split_invariant([(C, record(22, client_hello())), (S, records)])
    assert sum(isinstance(e, CertificateObservation) for e in events) == 1


def test_tls13_certificates_hidden_not_guessed() -> None:
    chunks = [
        (C, record(22, client_hello(tls13=True), version=0x0301)),
        (S, record(22, server_hello(0x1301, tls13=True))),
        (S, record(20, b"\x01")),
        (S, record(23, b"\x17" * 200)),  # encrypted EncryptedExtensions, Certificate, ...
        (C, record(20, b"\x01")),
        (C, record(23, b"\x18" * 60)),
    ]
    events = split_invariant(chunks)
    hellos = [e for e in events if isinstance(e, TlsHandshake)]
    assert hellos[0].version_name == "TLS 1.3" and hellos[0].supported_versions == (0x0A0A, 0x0304)
    assert hellos[1].version_name == "TLS 1.3" and hellos[1].certificates_hidden
    assert not any(isinstance(e, CertificateObservation) for e in events)


def test_hello_retry_request_keeps_parsing() -> None:
    chunks = [
        (C, record(22, client_hello(tls13=True))),
        (S, record(22, server_hello(0x1301, tls13=True, retry=True))),
        (C, record(22, client_hello("second.example", tls13=True))),
    ]
    hellos = [e for e in split_invariant(chunks) if isinstance(e, TlsHandshake)]
    assert [h.message for h in hellos] == ["client_hello", "server_hello", "client_hello"]
    assert hellos[1].hello_retry and hellos[2].sni == "second.example"


def test_handshake_failure_alert_before_server_hello() -> None:
    events = split_invariant([(C, record(22, client_hello())), (S, record(21, b"\x02\x28"))])
    alerts = [e for e in events if isinstance(e, TlsHandshake) and e.message == "alert"]
    assert alerts[0].eve_body()["tls"]["alert"]["description"] == "handshake_failure"


def test_not_tls_is_one_anomaly_then_ignored() -> None:
    s = TlsSession(FLOW, Limits())
    out = feed(s, [(C, b"GET / HTTP/1.1\r\n\r\n"), (C, record(22, client_hello()))])
    assert [e.kind for e in out if isinstance(e, ProtocolAnomaly)] == ["tls.malformed_record"]
    assert not any(isinstance(e, TlsHandshake) for e in out)


def test_handshake_over_limit_is_skipped_by_counting() -> None:
    limits = Limits(tls_max_handshake=1000)
    big = certificate_msg(b"\x30" + b"\x00" * 3000)
    records = b"".join(record(22, big[i : i + 500]) for i in range(0, len(big), 500))
    s = TlsSession(FLOW, limits)
    out = feed(s, [(S, records), (S, record(21, b"\x01\x00"))])
    assert [e.kind for e in out if isinstance(e, ProtocolAnomaly)] == ["tls.handshake_too_large"]
    assert len(s._to_client.hs_buf) == 0
    assert [e.message for e in out if isinstance(e, TlsHandshake)] == ["alert"]


def test_bad_certificate_and_too_many() -> None:
    limits = Limits(tls_max_certificates=2)
    msg = certificate_msg(b"\x30\x03\x02\x01\x00", SERVER_DER, SERVER_DER)
    out = feed(TlsSession(FLOW, limits), [(S, record(22, msg))])
    kinds = [e.kind for e in out if isinstance(e, ProtocolAnomaly)]
    assert kinds == ["tls.too_many_certificates", "tls.bad_certificate"]
    assert sum(isinstance(e, CertificateObservation) for e in out) == 1


def test_truncated_client_hello_is_malformed_handshake() -> None:
    body = client_hello()
    broken = handshake(1, body[4:40])
    out = feed(TlsSession(FLOW, Limits()), [(C, record(22, broken))])
    assert [e.kind for e in out if isinstance(e, ProtocolAnomaly)] == ["tls.malformed_handshake"]


def test_parsers_raise_only_parse_errors() -> None:
    with pytest.raises(ParseError):
        parse_client_hello(Reader(b"\x03\x03"))
    with pytest.raises(ParseError):
        parse_server_hello(Reader(b"\x03\x03" + b"\x00" * 10))


@pytest.mark.parametrize(
    ("data", "to_server", "expected"),
    [
        (record(22, client_hello(), version=0x0301), True, "yes"),
        (record(22, server_hello()), False, "yes"),
        (record(22, server_hello()), True, "no"),  # a ServerHello from the client side
        (b"\x16\x03", True, "more"),
        (b"\x16\x03\x05\x00\x10\x01", True, "no"),
        (b"GET / HTTP/1.1\r\n", True, "no"),
        (b"\x10\x10\x00\x04MQTT\x04", True, "no"),
    ],
)
def test_probe(data: bytes, to_server: bool, expected: str) -> None:
    assert TlsDissector().probe(data, to_server).value == expected


def test_stats_section() -> None:
    d = TlsDissector()
    stats = d.stats()
    for e in feed(d.session(FLOW, Limits()), tls12_flights()):
        stats.observe(e)
    sec = stats.section()
    assert sec["handshakes"] == 1 and sec["versions"] == {"TLS 1.2": 1}
    assert sec["certificates"] == 2 and sec["sni"] == ["broker.plant.local"]
    assert sec["alerts"] == {"unknown_ca": 1}
    assert d.name == "tls" and d.ports == frozenset({443, 8883, 4843, 802, 8443})
    json.dumps(sec)
