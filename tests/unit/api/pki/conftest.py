"""Fixtures for the PKI tests: a CA per module (key generation is the slow part), cached device keys,
and a CSR builder that can also build the hostile requests of HOSTILE_INPUTS A11."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pki_helpers import ACTOR, PASSPHRASE, CsrMaker, build_csr, open_ca

from api.pki.ca import CertificateAuthority, init_ca


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def make_csr(rsa_key: rsa.RSAPrivateKey) -> CsrMaker:
    def make(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None, **kwargs: object) -> bytes:
        return build_csr(key or rsa_key, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ECDSA P-256 CA (fast to make) shared by a test module; networks 10.10.0.0/16 and loopback."""
    directory = tmp_path_factory.mktemp("pki") / "ca"
    init_ca(
        directory,
        PASSPHRASE,
        ACTOR,
        key_kind="ecdsa-p256",
        ip_networks=[ipaddress.ip_network("10.10.0.0/16"), ipaddress.ip_network("127.0.0.0/8")],
    ).close()
    return directory


@pytest.fixture
def ca(ca_dir: Path) -> Iterator[CertificateAuthority]:
    cadir, authority = open_ca(ca_dir)
    try:
        yield authority
    finally:
        cadir.close()
