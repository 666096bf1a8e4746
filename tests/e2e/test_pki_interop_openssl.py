"""Interop with OpenSSL: CSRs made by ``openssl req``, certificates checked by ``openssl verify``.

Every profile is issued from an OpenSSL-made CSR by an RSA-3072 CA and an ECDSA P-384 CA; ``openssl
verify -x509_strict`` must accept each one against the exported chain (with the purpose the profile is
for), and after revocation ``-crl_check`` with the exported CRL must reject the revoked one and still
accept the others.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from api.pki.cli import main

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")

PASSPHRASE = b"interop passphrase 0001"

# profile -> (subject, subjectAltName for openssl -addext or None, role, openssl -purpose or None)
PROFILE_REQUESTS = {
    "opcua-app": (
        "/CN=plc1/O=Plant A",
        "URI:urn:plant:plc1,DNS:plc1.plant.local,IP:10.1.1.5",
        None,
        "sslserver",
    ),
    "mqtt-broker": ("/CN=broker", "DNS:broker.plant.local,IP:127.0.0.1", None, "sslserver"),
    "mqtt-client": ("/CN=pump-7", None, None, "sslclient"),
    "modbus-security": ("/CN=scada-1", "IP:10.1.2.3", "Operator", "sslclient"),
    "tls-server": ("/CN=hmi", "DNS:hmi.plant.local", None, "sslserver"),
    "tls-client": ("/CN=historian", "URI:urn:plant:historian", None, "sslclient"),
}


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


def _pki(tmp: Path, key: str, capsys: pytest.CaptureFixture[str]) -> tuple[list[str], Path]:
    pw = tmp / "pw"
    pw.write_bytes(PASSPHRASE)
    pw.chmod(0o600)
    common = ["--dir", str(tmp / "ca"), "--passphrase-file", str(pw)]
    assert main(["pki", "init", *common, "--key", key]) == 0, capsys.readouterr().err
    return common, tmp / "ca"


def _csr(tmp: Path, name: str, subject: str, san: str | None, key_spec: list[str]) -> Path:
    csr = tmp / f"{name}.csr"
    args = ["req", "-new", *key_spec, "-nodes", "-keyout", str(tmp / f"{name}.key"), "-subj", subject]
    if san:
        args += ["-addext", f"subjectAltName={san}"]
    result = _openssl(*args, "-out", str(csr))
    assert result.returncode == 0, result.stderr
    return csr


@pytest.mark.parametrize(
    ("ca_key", "device_key"),
    [
        ("rsa-3072", ["-newkey", "rsa:2048"]),
        ("ecdsa-p384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
    ],
)
def test_openssl_verify_accepts_issued_and_rejects_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca_key: str, device_key: list[str]
) -> None:
    common, _ = _pki(tmp_path, ca_key, capsys)
    certs: dict[str, Path] = {}
    serials: dict[str, str] = {}
    for profile, (subject, san, role, _purpose) in PROFILE_REQUESTS.items():
        csr = _csr(tmp_path, profile, subject, san, device_key)
        out = tmp_path / f"{profile}.pem"
        argv = ["pki", "issue", *common, "--profile", profile, "--csr", str(csr), "--out", str(out)]
        if role:
            argv += ["--role", role]
        assert main(argv) == 0, capsys.readouterr().err
        serials[profile] = capsys.readouterr().out.strip()
        certs[profile] = out

    bundle = tmp_path / "bundle"
    assert main(["pki", "export", "--dir", common[1], "--format", "pem-bundle", "--out", str(bundle)]) == 0
    chain = str(bundle / "ca-chain.pem")
    for profile, (_s, _san, _r, purpose) in PROFILE_REQUESTS.items():
        result = _openssl(
            "verify", "-x509_strict", "-purpose", str(purpose), "-CAfile", chain, str(certs[profile])
        )
        assert result.returncode == 0, f"{profile}: {result.stdout}{result.stderr}"
        assert result.stdout.strip().endswith(": OK")

    # The CRL before any revocation accepts everything, with CRL checks on the whole chain.
    crl = str(bundle / "crl.pem")
    for cert in certs.values():
        ok = _openssl("verify", "-crl_check_all", "-CAfile", chain, "-CRLfile", crl, str(cert))
        assert ok.returncode == 0, ok.stdout + ok.stderr

    assert (
        main(["pki", "revoke", *common, "--serial", serials["mqtt-client"], "--reason", "keyCompromise"]) == 0
    )
    assert main(["pki", "export", "--dir", common[1], "--format", "pem-bundle", "--out", str(bundle)]) == 0
    revoked = _openssl("verify", "-crl_check", "-CAfile", chain, "-CRLfile", crl, str(certs["mqtt-client"]))
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr
    for profile, cert in certs.items():
        if profile == "mqtt-client":
            continue
        still_ok = _openssl("verify", "-crl_check_all", "-CAfile", chain, "-CRLfile", crl, str(cert))
        assert still_ok.returncode == 0, f"{profile}: {still_ok.stdout}{still_ok.stderr}"

    # `pki crl --out` gives the same verdict on its own.
    own_crl = tmp_path / "issuing.crl.pem"
    assert main(["pki", "crl", *common, "--out", str(own_crl)]) == 0
    again = _openssl(
        "verify", "-crl_check", "-CAfile", chain, "-CRLfile", str(own_crl), str(certs["mqtt-client"])
    )
    assert again.returncode != 0 and "certificate revoked" in again.stdout + again.stderr


def test_openssl_reads_encrypted_ca_keys_only_with_the_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, directory = _pki(tmp_path, "ecdsa-p256", capsys)
    key = str(directory / "issuing-ca.key")
    good = _openssl("pkey", "-in", key, "-passin", f"file:{tmp_path / 'pw'}", "-noout")
    assert good.returncode == 0, good.stderr
    (tmp_path / "wrong").write_text("wrong passphrase\n")
    bad = _openssl("pkey", "-in", key, "-passin", f"file:{tmp_path / 'wrong'}", "-noout")
    assert bad.returncode != 0
    assert "ENCRYPTED PRIVATE KEY" in Path(key).read_text()


def test_issuing_ca_path_length_zero_is_enforced_by_openssl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CA certificate minted by hand under the issuing CA must not validate (pathlen 0)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from api.pki.ca import CaDirectory

    _, directory = _pki(tmp_path, "ecdsa-p256", capsys)
    with CaDirectory(directory, "test") as cadir:
        ca = cadir.unlock((tmp_path / "pw").read_bytes())
        rogue_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "rogue sub CA")])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(cadir.issuing_cert.subject)
            .public_key(rogue_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(cadir.issuing_cert.not_valid_before_utc)
            .not_valid_after(cadir.issuing_cert.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        )
        rogue = builder.sign(ca.issuing_key, hashes.SHA256())
        leaf_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "leaf")])
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(leaf_name)
            .issuer_name(name)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(cadir.issuing_cert.not_valid_before_utc)
            .not_valid_after(cadir.issuing_cert.not_valid_after_utc)
            .sign(rogue_key, hashes.SHA256())
        )
        (tmp_path / "chain.pem").write_bytes(cadir.chain_pem())
    (tmp_path / "rogue.pem").write_bytes(rogue.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    result = _openssl(
        "verify", "-CAfile", str(tmp_path / "chain.pem"), "-untrusted", str(tmp_path / "rogue.pem"),
        str(tmp_path / "leaf.pem"),
    )  # fmt: skip
    assert result.returncode != 0
    assert "path length" in (result.stdout + result.stderr).lower()
