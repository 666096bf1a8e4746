"""Fixtures for the web API tests: an app on a temporary store and PKI, one token per role."""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from zw_api_env import API_PASSPHRASE, ApiEnv, make_tokens

from api.app import create_app
from api.pki.ca import init_ca
from api.settings import Settings


@pytest.fixture(scope="session")
def pki_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ECDSA P-256 CA (fast to make), copied for each test that changes it."""
    directory = tmp_path_factory.mktemp("api-pki") / "ca"
    init_ca(
        directory,
        API_PASSPHRASE,
        "pytest",
        key_kind="ecdsa-p256",
        ip_networks=[ipaddress.ip_network("10.10.0.0/16"), ipaddress.ip_network("127.0.0.0/8")],
    ).close()
    return directory


@pytest.fixture
def pki_paths(tmp_path: Path, pki_template: Path) -> tuple[Path, Path]:
    target = tmp_path / "pki"
    shutil.copytree(pki_template, target)
    target.chmod(0o700)
    passfile = tmp_path / "passphrase"
    passfile.write_bytes(API_PASSPHRASE + b"\n")
    passfile.chmod(0o600)
    return target, passfile


@pytest.fixture
def make_env(tmp_path: Path, pki_paths: tuple[Path, Path]) -> Iterator[Callable[..., ApiEnv]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> ApiEnv:
        pki_dir, passfile = pki_paths
        fields: dict[str, object] = {
            "db_path": tmp_path / "zonewarden.db",
            "pki_dir": pki_dir,
            "pki_passphrase_file": passfile,
        }
        fields.update(overrides)
        settings = Settings(**fields)  # type: ignore[arg-type]
        app = create_app(settings)
        tokens = make_tokens(settings.db_path)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return ApiEnv(app, client, settings, tokens)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def env(make_env: Callable[..., ApiEnv]) -> ApiEnv:
    return make_env()


@pytest.fixture(scope="session")
def device_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def csr_pem(device_key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    """A PEM CSR for the tls-client profile (CN required), or with other names."""

    def make(
        cn: str = "hmi-1",
        sans: list[x509.GeneralName] | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> str:
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        csr = builder.sign(key or device_key, hashes.SHA256())
        return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")

    return make
