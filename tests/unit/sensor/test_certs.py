"""Certificates seen on the wire: parsed facts, self-signed detection, chains, garbage refused."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from sensor.certs import parse_certificate, split_der_chain
from sensor.errors import Malformed


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, issuer: str, key, signer, san: bool = True, ca: bool = False) -> bytes:  # type: ignore[no-untyped-def]
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier("urn:plant:plc1"),
                    x509.DNSName("plc1.plant.local"),
                    x509.IPAddress(ipaddress.ip_address("10.1.1.5")),
                ]
            ),
            critical=False,
        )
    return b.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_self_signed_rsa_certificate_facts(rsa_key: rsa.RSAPrivateKey) -> None:
    der = _cert("plc1", "plc1", rsa_key, rsa_key)
    info = parse_certificate(der)
    assert info.subject == "CN=plc1"
    assert info.serial_hex == "1234abcd"
    assert (info.key_type, info.key_size) == ("rsa", 2048)
    assert info.san_uris == ("urn:plant:plc1",)
    assert info.san_dns == ("plc1.plant.local",)
    assert info.san_ips == ("10.1.1.5",)
    assert info.self_signed is True
    assert info.is_ca is False
    assert info.not_before.startswith("2025-01-01T00:00:00")
    assert info.signature_algorithm == "sha256WithRSAEncryption"
    assert len(info.sha1) == 40 and len(info.sha256) == 64


def test_issued_certificate_is_not_self_signed(rsa_key: rsa.RSAPrivateKey) -> None:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    info = parse_certificate(_cert("plc2", "Plant CA", leaf_key, rsa_key, san=False))
    assert info.self_signed is False
    assert (info.key_type, info.key_size) == ("ec", 256)
    assert info.san_uris == ()


def test_same_subject_and_issuer_but_foreign_signature_is_not_self_signed(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert parse_certificate(_cert("x", "x", other, rsa_key)).self_signed is False


def test_chain_split_and_bounds(rsa_key: rsa.RSAPrivateKey) -> None:
    a = _cert("a", "a", rsa_key, rsa_key)
    b = _cert("b", "a", rsa_key, rsa_key)
    assert split_der_chain(a + b) == [a, b]
    assert split_der_chain(a * 40, max_certs=16) == [a] * 16
    assert split_der_chain(a + b"\x30\x84\xff\xff\xff\xff") == [a]  # length past the end stops the walk
    assert split_der_chain(b"") == []


@pytest.mark.parametrize("blob", [b"", b"\x30\x03abc", b"garbage" * 10, b"\x30" + b"\x00" * 70000])
def test_garbage_is_malformed(blob: bytes) -> None:
    with pytest.raises(Malformed):
        parse_certificate(blob)
