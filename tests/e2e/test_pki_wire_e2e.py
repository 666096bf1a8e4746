"""Wire ↔ PKI end to end: real stacks on zonewarden-issued certificates, captured, replayed, judged.

1. An asyncua server and client, each on an ``opcua-app`` certificate from zonewarden's CA (RSA 3072),
   connect with Basic256Sha256 SignAndEncrypt on 127.0.0.1 while tcpdump records. Replaying that
   capture with ``--pki-dir`` finds both OpenSecureChannel certificates managed (no certificate alert;
   ``pki list --observed --json`` says managed, joined to the issued serials). After ``pki revoke`` of
   the client's certificate the same capture gives ``cert:revoked_in_use`` for the client only.
2. The committed captures of other stacks (asyncua and mosquitto on a sample CA that is not ours)
   replayed against a fresh CA: every leaf certificate is ``cert:unmanaged``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from zw_paths import PCAPS

from api.pki.cli import main as pki_main
from pcaps.generate.record import RecordingError, recording
from sensor.cli import main as zonewarden

asyncua = pytest.importorskip("asyncua")

from asyncua import Client, Server, ua  # noqa: E402
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256  # noqa: E402

SERVER_URI = "urn:zonewarden:wire:server"
CLIENT_URI = "urn:zonewarden:wire:client"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key_and_csr(tmp: Path, name: str, app_uri: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp / f"{name}.key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    sans = [
        x509.UniformResourceIdentifier(app_uri),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"wire {name}")]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    csr_path = tmp / f"{name}.csr"
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


async def _session(port: int, certs: dict[str, Path]) -> float:
    """Server and client on the issued certificates, SignAndEncrypt; returns the value read."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/wire/")
    await server.set_application_uri(SERVER_URI)
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(certs["server_cert"]))
    await server.load_private_key(str(certs["server_key"]))
    ns = await server.register_namespace("urn:zonewarden:wire")
    variable = await (await server.nodes.objects.add_object(ns, "Line")).add_variable(ns, "Speed", 12.5)
    await server.start()
    try:
        client = Client(f"opc.tcp://127.0.0.1:{port}/wire/", timeout=5)
        client.application_uri = CLIENT_URI
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(certs["client_cert"]),
            private_key=str(certs["client_key"]),
            server_certificate=str(certs["server_cert"]),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
        async with client:
            return float(await client.get_node(variable.nodeid).read_value())
    finally:
        await server.stop()


def _replay(
    pcap: Path, ca: Path, db: Path, summary: Path, eve: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    args = ["replay", "-q", str(pcap), "--pki-dir", str(ca), "--db", str(db)]
    code = zonewarden([*args, "--summary-json", str(summary), "--eve", str(eve)])
    assert code == 0, capsys.readouterr().err
    alerts = [json.loads(line) for line in eve.read_text().splitlines()]
    return json.loads(summary.read_text()), [a for a in alerts if a["event_type"] == "alert"]


def _observed(ca: Path, db: Path, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert pki_main(["pki", "list", "--dir", str(ca), "--observed", "--db", str(db), "--json"]) == 0
    observed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)["observed"]
    return observed


@pytest.mark.slow
def test_asyncua_session_on_issued_certificates_is_managed_then_revoked_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"wire interop passphrase\n")
    pw.chmod(0o600)
    ca = tmp_path / "ca"
    common = ["--dir", str(ca), "--passphrase-file", str(pw)]
    assert pki_main(["pki", "init", *common, "--key", "rsa-3072"]) == 0
    certs: dict[str, Path] = {}
    serials: dict[str, str] = {}
    for name, app_uri in (("server", SERVER_URI), ("client", CLIENT_URI)):
        key, csr = _key_and_csr(tmp_path, name, app_uri)
        out = tmp_path / f"{name}.pem"
        capsys.readouterr()
        code = pki_main(
            ["pki", "issue", *common, "--profile", "opcua-app", "--csr", str(csr), "--out", str(out)]
        )
        assert code == 0, capsys.readouterr().err
        serials[name] = capsys.readouterr().out.strip()
        certs[f"{name}_cert"], certs[f"{name}_key"] = out, key

    port = _free_port()
    pcap = tmp_path / "session.pcap"
    try:
        with recording(pcap, f"tcp port {port}"):
            value = asyncio.run(asyncio.wait_for(_session(port, certs), timeout=15))
    except RecordingError as exc:
        pytest.skip(str(exc))
    assert value == 12.5

    # 1. both certificates are ours: managed, no certificate alert
    summary, alerts = _replay(
        pcap, ca, tmp_path / "one.db", tmp_path / "one.json", tmp_path / "one.eve", capsys
    )
    assert summary["certificates"]["by_status"] == {"managed": 2}
    assert summary["certificates"]["observations"] >= 2
    assert [a for a in alerts if a["alert"]["category"] == "certificate"] == []
    observed = _observed(ca, tmp_path / "one.db", capsys)
    assert sorted((o["status"], o["roles"][0], o["issued"]["serial"]) for o in observed) == sorted(
        [("managed", "client", serials["client"]), ("managed", "server", serials["server"])]
    )
    assert all(o["ip"] == "127.0.0.1" and o["sources"] == ["opcua.opn"] for o in observed)
    assert all(o["first_seen"] and o["last_seen"] for o in observed)

    # 2. revoke the client's certificate: the same capture now shows it in use
    assert (
        pki_main(["pki", "revoke", *common, "--serial", serials["client"], "--reason", "keyCompromise"]) == 0
    )
    summary, alerts = _replay(
        pcap, ca, tmp_path / "two.db", tmp_path / "two.json", tmp_path / "two.eve", capsys
    )
    cert_alerts = [a for a in alerts if a["alert"]["category"] == "certificate"]
    assert [a["zonewarden"]["rule"] for a in cert_alerts] == ["cert:revoked_in_use"]
    evidence = cert_alerts[0]["zonewarden"]["evidence"]
    assert evidence["presenter"] == "client" and evidence["serial"] == serials["client"]
    assert evidence["revocation_reason"] == "keyCompromise" and cert_alerts[0]["alert"]["severity"] == 1
    assert cert_alerts[0]["src_ip"] == "127.0.0.1" and cert_alerts[0]["dest_port"] == port
    assert summary["certificates"]["by_status"] == {"managed": 1, "revoked_in_use": 1}
    statuses = {
        o["roles"][0]: (o["status"], o["issued"]["status"])
        for o in _observed(ca, tmp_path / "two.db", capsys)
    }
    assert statuses == {"client": ("revoked_in_use", "revoked"), "server": ("managed", "valid")}


@pytest.mark.parametrize(
    ("pcap", "presenters"),
    [
        ("opcua-asyncua-basic256sha256.pcap", ["client", "server"]),
        ("mqtt-tls-mosquitto.pcap", ["client", "server"]),
    ],
)
def test_committed_captures_of_another_ca_are_unmanaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pcap: str, presenters: list[str]
) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"fresh ca passphrase\n")
    pw.chmod(0o600)
    ca = tmp_path / "ca"
    assert (
        pki_main(["pki", "init", "--dir", str(ca), "--passphrase-file", str(pw), "--key", "ecdsa-p256"]) == 0
    )
    db = tmp_path / "zw.db"
    summary, alerts = _replay(PCAPS / pcap, ca, db, tmp_path / "s.json", tmp_path / "e.eve", capsys)
    cert_alerts = [a for a in alerts if a["alert"]["category"] == "certificate"]
    assert sorted(a["zonewarden"]["evidence"]["presenter"] for a in cert_alerts) == presenters
    assert {a["zonewarden"]["rule"] for a in cert_alerts} == {"cert:unmanaged"}
    assert {a["zonewarden"]["evidence"]["reason"] for a in cert_alerts} == {"issuer_unknown"}
    assert summary["certificates"]["by_status"] == {"unmanaged": len(presenters)}
    assert summary["alerts"]["by_rule"]["cert:unmanaged"] == len(presenters)
    observed = _observed(ca, db, capsys)
    assert sorted(o["status"] for o in observed) == ["unmanaged"] * len(presenters)
    assert all(o["issued"] is None for o in observed)
