"""``zonewarden pki ...`` through api.pki.cli: the contract, one-line refusals, exit codes, exports."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from pki_helpers import PASSPHRASE, build_csr, dns, ip, uri

from api.pki.cli import main

REPO = Path(__file__).resolve().parents[4]


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    def invoke(*argv: str) -> Run:
        code = main(["pki", *argv])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Run(code, captured.out, captured.err)

    return invoke


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cli")
    pw = base / "pw"
    pw.write_bytes(PASSPHRASE + b"\n")
    pw.chmod(0o600)
    p12pw = base / "p12pw"
    p12pw.write_bytes(b"device secret 42\n")
    p12pw.chmod(0o600)
    code = main(
        ["pki", "init", "--dir", str(base / "ca"), "--passphrase-file", str(pw), "--key", "ecdsa-p256"]
    )
    assert code == 0
    return {"base": base, "dir": base / "ca", "pw": pw, "p12pw": p12pw}


def _common(pki: dict[str, Path]) -> list[str]:
    return ["--dir", str(pki["dir"]), "--passphrase-file", str(pki["pw"])]


def _one_line_error(result: Run) -> str:
    """Exactly one error line (warnings, e.g. about a world-readable passphrase file, may precede it)."""
    lines = result.err.strip().splitlines()
    errors = [line for line in lines if line.startswith("zonewarden: error: ")]
    assert len(errors) == 1, result.err
    assert all(line.startswith("zonewarden: warning: ") for line in lines if line not in errors), result.err
    return errors[0]


def test_issue_from_csr_prints_serial_and_writes_pem(run, pki, rsa_key: rsa.RSAPrivateKey) -> None:  # type: ignore[no-untyped-def]
    csr = pki["base"] / "plc.csr"
    csr.write_bytes(build_csr(rsa_key, cn="plc1", sans=[uri("urn:plant:plc1"), ip("10.1.2.3")]))
    out = pki["base"] / "plc.pem"
    result = run("issue", *_common(pki), "--profile", "opcua-app", "--csr", str(csr), "--out", str(out))
    assert result.code == 0, result.err
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    assert result.out.strip() == format(cert.serial_number, "x")


def test_issue_refusal_is_one_line_and_nonzero(run, pki, rsa_key: rsa.RSAPrivateKey) -> None:  # type: ignore[no-untyped-def]
    csr = pki["base"] / "wild.csr"
    csr.write_bytes(build_csr(rsa_key, cn="web", sans=[dns("*.plant.local")]))
    out = pki["base"] / "wild.pem"
    result = run("issue", *_common(pki), "--profile", "tls-server", "--csr", str(csr), "--out", str(out))
    assert result.code == 2
    assert "san_wildcard" in _one_line_error(result)
    assert not out.exists()


def test_generate_key_writes_a_pkcs12_openssl_can_read(run, pki) -> None:  # type: ignore[no-untyped-def]
    p12 = pki["base"] / "rtu.p12"
    out = pki["base"] / "rtu.pem"
    result = run(
        "issue", *_common(pki), "--profile", "modbus-security", "--generate-key", "--key-type", "ecdsa-p256",
        "--subject", "CN=rtu-4,O=Plant A", "--san", "ip:10.0.4.4", "--san", "dns:rtu-4.plant.local",
        "--role", "Operator", "--p12-out", str(p12), "--p12-passphrase-file", str(pki["p12pw"]),
        "--out", str(out),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    key, cert, extra = pkcs12.load_key_and_certificates(p12.read_bytes(), b"device secret 42")
    assert key is not None and cert is not None
    assert cert == x509.load_pem_x509_certificate(out.read_bytes())
    assert len(extra) == 2  # issuing CA + root CA
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(p12.read_bytes(), b"wrong")
    if shutil.which("openssl"):
        info = subprocess.run(
            ["openssl", "pkcs12", "-in", str(p12), "-info", "-noout", "-passin", f"file:{pki['p12pw']}"],
            capture_output=True,
            text=True,
        )
        assert info.returncode == 0, info.stderr
        assert "AES-256-CBC" in info.stderr


def test_generate_key_needs_its_options(run, pki) -> None:  # type: ignore[no-untyped-def]
    result = run("issue", *_common(pki), "--profile", "tls-client", "--generate-key", "--out", "x.pem")
    assert result.code == 2
    assert "--subject" in _one_line_error(result)


def test_bad_subject_and_san_options(run, pki) -> None:  # type: ignore[no-untyped-def]
    base = [
        *_common(pki),
        "--profile",
        "tls-client",
        "--generate-key",
        "--p12-out",
        str(pki["base"] / "a.p12"),
    ]
    base += ["--p12-passphrase-file", str(pki["p12pw"]), "--out", str(pki["base"] / "a.pem")]
    result = run("issue", *base, "--subject", "CN=ok", "--san", "mail:a@b")
    assert result.code == 2 and "san_option_invalid" in _one_line_error(result)
    result = run("issue", *base, "--subject", "not a dn")
    assert result.code == 2 and "subject_option_invalid" in _one_line_error(result)


def test_wrong_passphrase_exit_5(run, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad"
    bad.write_text("nope\n")
    result = run(
        "crl", "--dir", str(pki["dir"]), "--passphrase-file", str(bad), "--out", str(tmp_path / "c.pem")
    )
    assert result.code == 5
    assert "wrong passphrase" in _one_line_error(result)


def test_missing_passphrase_without_a_terminal(run, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("crl", "--dir", str(pki["dir"]), "--out", str(tmp_path / "c.pem"))
    assert result.code == 2
    assert "passphrase" in _one_line_error(result)


def test_passphrase_is_not_read_from_the_environment(run, pki, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("ZONEWARDEN_PASSPHRASE", "ZONEWARDEN_PKI_PASSPHRASE", "PASSPHRASE"):
        monkeypatch.setenv(name, PASSPHRASE.decode())
    result = run("crl", "--dir", str(pki["dir"]), "--out", str(tmp_path / "c.pem"))
    assert result.code != 0


def test_revoke_codes(run, pki, rsa_key: rsa.RSAPrivateKey) -> None:  # type: ignore[no-untyped-def]
    csr = pki["base"] / "c.csr"
    csr.write_bytes(build_csr(rsa_key, cn="client-9"))
    issued = run(
        "issue",
        *_common(pki),
        "--profile",
        "mqtt-client",
        "--csr",
        str(csr),
        "--out",
        str(pki["base"] / "c.pem"),
    )
    serial = issued.out.strip()
    assert run("revoke", *_common(pki), "--serial", serial, "--reason", "keyCompromise").code == 0
    again = run("revoke", *_common(pki), "--serial", serial)
    assert again.code == 4 and "already_revoked" in _one_line_error(again)
    unknown = run("revoke", *_common(pki), "--serial", "abcdef123456")
    assert unknown.code == 3 and "serial_unknown" in _one_line_error(unknown)
    negative = run("revoke", *_common(pki), "--serial", "-42")
    assert negative.code == 2 and "serial_negative" in _one_line_error(negative)
    long = run("revoke", *_common(pki), "--serial", "7f" * 21)
    assert long.code == 2 and "serial_too_long" in _one_line_error(long)
    bad_reason = run("revoke", *_common(pki), "--serial", serial, "--reason", "whim")
    assert bad_reason.code == 2 and "reason_unknown" in _one_line_error(bad_reason)


def test_crl_command_writes_a_crl(run, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "crl.pem"
    assert run("crl", *_common(pki), "--out", str(out)).code == 0
    crl = x509.load_pem_x509_crl(out.read_bytes())
    assert crl.issuer.rfc4514_string() == "CN=zonewarden Issuing CA"


def test_renew_same_key(run, pki, rsa_key: rsa.RSAPrivateKey) -> None:  # type: ignore[no-untyped-def]
    csr = pki["base"] / "r.csr"
    csr.write_bytes(build_csr(rsa_key, cn="plc-r", sans=[uri("urn:plant:r")]))
    first = run(
        "issue",
        *_common(pki),
        "--profile",
        "opcua-app",
        "--csr",
        str(csr),
        "--out",
        str(pki["base"] / "r1.pem"),
    )
    out = pki["base"] / "r2.pem"
    renewed = run("renew", *_common(pki), "--serial", first.out.strip(), "--same-key", "--out", str(out))
    assert renewed.code == 0, renewed.err
    assert renewed.out.strip() != first.out.strip()
    assert x509.load_pem_x509_certificate(out.read_bytes()).public_key() == rsa_key.public_key()
    neither = run("renew", *_common(pki), "--serial", first.out.strip(), "--out", str(out))
    assert neither.code == 2


def test_export_layouts(run, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, trust = tmp_path / "bundle", tmp_path / "trust"
    assert run("export", "--dir", str(pki["dir"]), "--format", "pem-bundle", "--out", str(bundle)).code == 0
    assert sorted(p.name for p in bundle.iterdir()) == [
        "ca-chain.pem", "crl.pem", "issuing-ca.crl.pem", "issuing-ca.pem", "root-ca.crl.pem", "root-ca.pem",
    ]  # fmt: skip
    chain = x509.load_pem_x509_certificates((bundle / "ca-chain.pem").read_bytes())
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=zonewarden Issuing CA",
        "CN=zonewarden Root CA",
    ]
    assert (bundle / "crl.pem").read_bytes().count(b"BEGIN X509 CRL") == 2

    assert (
        run("export", "--dir", str(pki["dir"]), "--format", "opcua-trustlist", "--out", str(trust)).code == 0
    )
    files = sorted(str(p.relative_to(trust)) for p in trust.rglob("*") if p.is_file())
    assert len(files) == 4
    for folder, suffix in (
        ("trusted/certs", ".der"),
        ("trusted/crl", ".crl"),
        ("issuer/certs", ".der"),
        ("issuer/crl", ".crl"),
    ):
        matching = [f for f in files if f.startswith(folder + "/")]
        assert len(matching) == 1 and matching[0].endswith(suffix), files
    trusted = x509.load_der_x509_certificate(next((trust / "trusted/certs").iterdir()).read_bytes())
    issuer = x509.load_der_x509_certificate(next((trust / "issuer/certs").iterdir()).read_bytes())
    assert "Issuing" in trusted.subject.rfc4514_string() and "Root" in issuer.subject.rfc4514_string()
    crl = x509.load_der_x509_crl(next((trust / "trusted/crl").iterdir()).read_bytes())
    assert crl.issuer == trusted.subject

    target = tmp_path / "a-file"
    target.write_text("x")
    refused = run("export", "--dir", str(pki["dir"]), "--format", "pem-bundle", "--out", str(target))
    assert refused.code == 2 and "not a directory" in _one_line_error(refused)


def test_list_text_json_and_observed(run, pki) -> None:  # type: ignore[no-untyped-def]
    text = run("list", "--dir", str(pki["dir"]))
    assert text.code == 0 and text.out.splitlines()[0].startswith("SERIAL")
    as_json = run("list", "--dir", str(pki["dir"]), "--json")
    doc = json.loads(as_json.out)
    profiles = [c["profile"] for c in doc["certificates"]]
    assert profiles[:2] == ["root-ca", "issuing-ca"]
    assert {"serial", "status", "subject", "sans", "not_after", "revocation_reason"} <= set(
        doc["certificates"][0]
    )
    absent = pki["dir"].parent / "absent.db"
    observed = run("list", "--dir", str(pki["dir"]), "--json", "--observed", "--db", str(absent))
    assert f"no observations store at {absent}" in observed.err
    assert json.loads(observed.out)["observed"] is None


def test_init_refusals(run, pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    again = run("init", *_common(pki))
    assert again.code == 4 and "directory_not_empty" in _one_line_error(again)
    short = tmp_path / "short"
    short.write_text("abc\n")
    too_short = run("init", "--dir", str(tmp_path / "new"), "--passphrase-file", str(short))
    assert too_short.code == 2 and "passphrase_too_short" in _one_line_error(too_short)
    missing = run("init", "--dir", str(tmp_path / "n2"), "--passphrase-file", str(tmp_path / "absent"))
    assert missing.code == 2 and "cannot read" in _one_line_error(missing)


def test_not_a_pki_directory(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("list", "--dir", str(tmp_path))
    assert result.code == 5 and "not_initialised" in _one_line_error(result)


def test_console_entry_has_no_traceback_on_refusal(pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """As a real process: argparse errors and refusals are short stderr messages."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "api.pki.cli", "pki", "revoke", *_common(pki), "--serial", "-1"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
