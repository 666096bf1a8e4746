# mypy: disallow-untyped-calls=False
"""Generate the OPC UA sample captures in pcaps/ from a real asyncua server and client.

An asyncua 2.x ``Server`` listens on 127.0.0.1:4840 and an asyncua ``Client`` talks to it while tcpdump
records the loopback (:func:`pcaps.generate.record.recording`). One capture per scenario:

* ``opcua-asyncua-none.pcap``: SecurityPolicy None, anonymous session: Browse, Read, Write, a
  subscription with data-change notifications, a method Call, then CloseSession / CLO;
* ``opcua-asyncua-basic256sha256.pcap``: Basic256Sha256 SignAndEncrypt with application instance
  certificates made by this script (a test CA signs a server and a client certificate, RSA 2048, SAN
  URI = ApplicationUri): the OPN certificates are visible, the MSG bodies are encrypted.

Run (as root, tcpdump needs the loopback): ``.venv/bin/python -m pcaps.generate.opcua_gen --out pcaps/``
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.server.server import Server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pcaps.generate.record import generator_main, recording

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PORT = 4840
ENDPOINT = f"opc.tcp://{HOST}:{PORT}/zonewarden/"
SERVER_URI = "urn:zonewarden:test:opcua-server"
CLIENT_URI = "urn:zonewarden:test:opcua-client"
NAMESPACE = "urn:zonewarden:test:plant"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zonewarden test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_pki(folder: Path) -> dict[str, Path]:
    """A test CA and two application instance certificates (OPC 10000-6 §6.2): SAN URI = ApplicationUri."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("zonewarden test CA"))
        .issuer_name(_name("zonewarden test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out: dict[str, Path] = {}
    for role, uri, eku in (
        ("server", SERVER_URI, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
        ("client", CLIENT_URI, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
    ):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"zonewarden {role}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(uri),
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address(HOST)),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=True,
                    data_encipherment=True,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path = folder / f"{role}.der"
        key_path = folder / f"{role}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        out[f"{role}_cert"] = cert_path
        out[f"{role}_key"] = key_path
    return out


async def _server(
    policy: list[ua.SecurityPolicyType], pki: dict[str, Path] | None
) -> tuple[Server, Any, Any]:
    server = Server()
    await server.init()
    server.set_endpoint(ENDPOINT)
    server.set_server_name("zonewarden test OPC UA server")
    await server.set_application_uri(SERVER_URI)
    server.set_security_policy(policy)
    if pki is not None:
        await server.load_certificate(str(pki["server_cert"]))
        await server.load_private_key(str(pki["server_key"]))
    idx = await server.register_namespace(NAMESPACE)
    plant = await server.nodes.objects.add_object(idx, "Line1")
    temp = await plant.add_variable(idx, "Temperature", 21.5)
    valve = await plant.add_variable(idx, "ValveOpen", False)
    await valve.set_writable()

    async def reset(parent: Any, counter: Any) -> list[ua.Variant]:
        return [ua.Variant(True, ua.VariantType.Boolean)]

    await plant.add_method(idx, "ResetCounter", reset, [ua.VariantType.Int32], [ua.VariantType.Boolean])
    return server, temp, valve


class _Handler:
    def __init__(self) -> None:
        self.changes = 0

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.changes += 1


async def scenario_none() -> None:
    server, temp, valve = await _server([ua.SecurityPolicyType.NoSecurity], None)
    async with server:
        client = Client(ENDPOINT, timeout=5)
        client.application_uri = CLIENT_URI
        client.name = "zonewarden test client"
        async with client:
            line = await client.nodes.objects.get_child(
                [f"{(await client.get_namespace_index(NAMESPACE))}:Line1"]
            )
            children = await line.get_children()
            for child in children:
                await child.read_browse_name()
            t = client.get_node(temp.nodeid)
            v = client.get_node(valve.nodeid)
            await t.read_value()
            await v.write_value(True)
            handler = _Handler()
            sub = await client.create_subscription(100, handler)
            await sub.subscribe_data_change([t, v])
            for value in (22.0, 22.5, 23.0):
                await temp.write_value(value)
                await asyncio.sleep(0.25)
            idx = await client.get_namespace_index(NAMESPACE)
            await line.call_method(f"{idx}:ResetCounter", ua.Variant(7, ua.VariantType.Int32))
            await sub.delete()
            await asyncio.sleep(0.1)


async def scenario_basic256sha256(pki: dict[str, Path]) -> None:
    server, temp, _valve = await _server([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt], pki)
    async with server:
        client = Client(ENDPOINT, timeout=5)
        client.application_uri = CLIENT_URI
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(pki["client_cert"]),
            private_key=str(pki["client_key"]),
            server_certificate=str(pki["server_cert"]),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
        async with client:
            t = client.get_node(temp.nodeid)
            for _ in range(3):
                await t.read_value()
            await client.nodes.objects.get_children()


def run(out_dir: Path) -> list[Path]:
    written = []
    target = out_dir / "opcua-asyncua-none.pcap"
    with recording(target, f"tcp port {PORT}"):
        asyncio.run(scenario_none())
    written.append(target)
    time.sleep(0.5)
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(Path(tmp))
        target = out_dir / "opcua-asyncua-basic256sha256.pcap"
        with recording(target, f"tcp port {PORT}"):
            asyncio.run(scenario_basic256sha256(pki))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    return generator_main(__doc__.splitlines()[0] if __doc__ else "", lambda out, names: run(out), argv)


if __name__ == "__main__":
    raise SystemExit(main())
