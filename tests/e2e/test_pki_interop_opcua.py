"""Interop with asyncua: an OPC UA server and client on certificates from zonewarden's CA.

Both sides get ``opcua-app`` certificates (SAN URI = their ApplicationUri) from an RSA-3072 CA. The
server trusts exactly what the exported OPC UA trust list puts in ``trusted/certs`` (asyncua's
TrustStore + CertificateValidator with TRUSTED_VALIDATION: time, URI, keyUsage, extendedKeyUsage, chain
to a trusted CA, CRL); the client validates the server the same way. They connect with Basic256Sha256
SignAndEncrypt on 127.0.0.1 and read a value. A client with a self-signed certificate is refused, which
shows the trust check is real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from api.pki.cli import main

asyncua = pytest.importorskip("asyncua")

from asyncua import Client, Server, ua  # noqa: E402
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256  # noqa: E402
from asyncua.crypto.truststore import TrustStore  # noqa: E402
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions  # noqa: E402

SERVER_URI = "urn:zonewarden:test:server"
CLIENT_URI = "urn:zonewarden:test:client"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hostname_sans() -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    host = socket.gethostname().lower()
    if host != "localhost" and all(part.isalnum() or "-" in part for part in host.split(".")):
        names.append(x509.DNSName(host))  # asyncua logs a warning when its own host name is missing
    return names


def _key_and_csr(tmp: Path, name: str, app_uri: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp / f"{name}.key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri), *_hostname_sans()]
    sans.append(x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    csr_path = tmp / f"{name}.csr"
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")])
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(True, True, True, True, False, False, False, False, False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(CLIENT_URI)]), critical=False
        )
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "intruder.pem", tmp / "intruder.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _validator(trust: Path, peer: CertificateValidatorOptions) -> CertificateValidator:
    store = TrustStore([trust / "trusted" / "certs"], [trust / "trusted" / "crl"])
    await store.load()
    return CertificateValidator(CertificateValidatorOptions.TRUSTED_VALIDATION | peer, store)


async def _session(
    port: int, trust: Path, server_cert: Path, server_key: Path, client_cert: Path, client_key: Path
) -> tuple[object, object]:
    """Start the server, connect the client, read one value; returns (read value, client error or None)."""
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/zonewarden/")
    await server.set_application_uri(SERVER_URI)
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(server_cert))
    await server.load_private_key(str(server_key))
    server.set_certificate_validator(await _validator(trust, CertificateValidatorOptions.PEER_CLIENT))
    ns = await server.register_namespace("urn:zonewarden:test")
    folder = await server.nodes.objects.add_object(ns, "Plant")
    variable = await folder.add_variable(ns, "Pressure", 4.25)
    await server.start()
    try:
        client = Client(f"opc.tcp://127.0.0.1:{port}/zonewarden/", timeout=5)
        client.application_uri = CLIENT_URI
        client.certificate_validator = await _validator(trust, CertificateValidatorOptions.PEER_SERVER)
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(client_cert),
            private_key=str(client_key),
            server_certificate=str(server_cert),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
        try:
            async with client:
                value = await client.get_node(variable.nodeid).read_value()
                policy = client.security_policy.URI
            return (value, policy), None
        except Exception as exc:  # the refusal case: whatever asyncua raises is the observation
            return None, exc
    finally:
        await server.stop()


@pytest.fixture
def pki(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    pw = tmp_path / "pw"
    pw.write_bytes(b"opc ua interop passphrase")
    pw.chmod(0o600)
    common = ["--dir", str(tmp_path / "ca"), "--passphrase-file", str(pw)]
    assert main(["pki", "init", *common, "--key", "rsa-3072"]) == 0
    paths: dict[str, Path] = {}
    for name, uri in (("server", SERVER_URI), ("client", CLIENT_URI)):
        key, csr = _key_and_csr(tmp_path, name, uri)
        cert = tmp_path / f"{name}.pem"
        code = main(
            ["pki", "issue", *common, "--profile", "opcua-app", "--csr", str(csr), "--out", str(cert)]
        )
        assert code == 0, capsys.readouterr().err
        paths[f"{name}_cert"], paths[f"{name}_key"] = cert, key
    trust = tmp_path / "trustlist"
    assert (
        main(["pki", "export", "--dir", common[1], "--format", "opcua-trustlist", "--out", str(trust)]) == 0
    )
    paths["trust"] = trust
    paths["tmp"] = tmp_path
    return paths


def test_asyncua_basic256sha256_sign_and_encrypt_with_issued_certificates(pki: dict[str, Path]) -> None:
    result, error = asyncio.run(
        asyncio.wait_for(
            _session(
                _free_port(),
                pki["trust"],
                pki["server_cert"],
                pki["server_key"],
                pki["client_cert"],
                pki["client_key"],
            ),
            timeout=15,
        )
    )
    assert error is None, repr(error)
    assert result == (4.25, "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256")


def test_asyncua_server_refuses_a_client_outside_the_trust_list(pki: dict[str, Path]) -> None:
    rogue_cert, rogue_key = _self_signed(pki["tmp"])
    result, error = asyncio.run(
        asyncio.wait_for(
            _session(
                _free_port(), pki["trust"], pki["server_cert"], pki["server_key"], rogue_cert, rogue_key
            ),
            timeout=15,
        )
    )
    assert result is None
    assert error is not None
    assert "BadCertificateUntrusted" in repr(error) or "Untrusted" in str(error)
