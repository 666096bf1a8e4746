"""Syslog sink against real local listeners: UDP, TCP (octet counting) and TLS with a self-made cert."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sensor.outputs.deliver import alert_payload
from sensor.outputs.syslog import SyslogSink, cef
from sensor.records import Alert, FlowRef

FLOW = FlowRef(7, "1:c", "tcp", "10.0.0.5", 40000, "10.0.0.9", 502)
ALERT = Alert(
    ts=1_700_000_000.5,
    flow=FLOW,
    rule="1:9100001:1",
    signature="Force | listen = only\\",
    category="signature",
    severity=1,
    signature_id=9100001,
    mitre=("T0814",),
    app_proto="modbus",
)


def _read_framed(conn: socket.socket) -> bytes:
    """One RFC 6587 octet-counted message, read byte-exact (never past its end)."""
    data = b""
    while not data.endswith(b" "):
        data += conn.recv(1)
    length = int(data[:-1])
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return body


def test_rfc5424_json_over_udp() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        sink = SyslogSink("u", f"syslog://127.0.0.1:{port}", hostname="sensor1")
        try:
            sink.send(alert_payload(ALERT), ALERT.alert_id, ALERT.ts)
        finally:
            sink.close()
        msg = server.recv(65536).decode()
    head, body = msg.split(" - alert - ", 1)
    assert head == "<130>1 2023-11-14T22:13:20.500000Z sensor1 zonewarden"  # local0 (16) * 8 + crit (2)
    record = json.loads(body)
    assert record["alert"]["signature_id"] == 9100001 and record["zonewarden"]["id"] == ALERT.alert_id


def test_cef_escaping() -> None:
    text = cef(alert_payload(ALERT))
    assert text.startswith("CEF:0|zonewarden|zonewarden|0.1.0|9100001|Force \\| listen = only\\\\|10|")
    ext = text.split("|", 7)[7]
    assert "src=10.0.0.5" in ext and "dpt=502" in ext and "cs2=T0814" in ext
    assert "msg=Force | listen \\= only\\\\" in ext
    assert f"externalId={ALERT.alert_id}" in ext


def test_cef_over_tcp_with_octet_counting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        port = server.getsockname()[1]
        sink = SyslogSink("t", f"syslog+tcp://127.0.0.1:{port}", fmt="cef", hostname="h")
        try:
            sink.send(alert_payload(ALERT), ALERT.alert_id, ALERT.ts)
            sink.send(alert_payload(ALERT), ALERT.alert_id, ALERT.ts)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                first, second = _read_framed(conn), _read_framed(conn)
        finally:
            sink.close()
    assert first == second
    assert b" - alert - CEF:0|zonewarden|" in first


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_json_over_tls_with_self_made_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(5)
                received.append(_read_framed(tls))

        thread = threading.Thread(target=serve)
        thread.start()
        sink = SyslogSink("s", f"syslog+tls://127.0.0.1:{port}", ca_file=str(cert), hostname="h")
        try:
            sink.send(alert_payload(ALERT), ALERT.alert_id, ALERT.ts)
        finally:
            thread.join(10)
            sink.close()
    assert json.loads(received[0].split(b" - alert - ", 1)[1])["zonewarden"]["rule"] == "1:9100001:1"


def test_tls_refuses_an_untrusted_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    other, _ = _self_signed(tmp_path / "other")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                try:
                    with ctx.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve)
        thread.start()
        sink = SyslogSink("s", f"syslog+tls://127.0.0.1:{port}", ca_file=str(other), hostname="h")
        try:
            with pytest.raises(ssl.SSLError):
                sink.send(alert_payload(ALERT), ALERT.alert_id, ALERT.ts)
        finally:
            thread.join(10)
            sink.close()
