"""Plain helpers shared by the PKI tests (fixtures live in conftest.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from api.pki.ca import CaDirectory, CertificateAuthority

PASSPHRASE = b"correct horse battery staple"
ACTOR = "test:pki"

CsrMaker = Callable[..., bytes]


def build_csr(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    cn: str | None = "device-1",
    sans: Sequence[x509.GeneralName] = (),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    subject: x509.Name | None = None,
    hash_alg: hashes.HashAlgorithm | None = None,
    pem: bool = True,
) -> bytes:
    name = (
        subject
        if subject is not None
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    csr = builder.sign(key, hash_alg or hashes.SHA256())  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM if pem else serialization.Encoding.DER)


def uri(value: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(value)


def dns(value: str) -> x509.DNSName:
    return x509.DNSName(value)


def ip(value: str) -> x509.IPAddress:
    return x509.IPAddress(ipaddress.ip_address(value))


def open_ca(directory: Path) -> tuple[CaDirectory, CertificateAuthority]:
    cadir = CaDirectory(directory, ACTOR)
    return cadir, cadir.unlock(PASSPHRASE)
