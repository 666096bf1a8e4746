"""CA init, key protection, serials, validity, renewal and the one-audit-record-per-operation rule."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pki_helpers import ACTOR, PASSPHRASE, CsrMaker, build_csr, dns, ip, open_ca, uri

from api.pki.ca import CaDirectory, CertificateAuthority, init_ca, random_serial
from api.pki.errors import CaUnavailable, Conflict, NotFound, RequestRefused
from api.pki.export import export

OPCUA_SANS = [uri("urn:plant:plc1"), dns("plc1.plant.local"), ip("10.10.1.5")]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- init and key protection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key_type", "size", "hash_name"),
    [
        ("rsa-3072", rsa.RSAPrivateKey, 3072, "sha256"),
        ("ecdsa-p256", ec.EllipticCurvePrivateKey, 256, "sha256"),
        ("ecdsa-p384", ec.EllipticCurvePrivateKey, 384, "sha384"),
    ],
)
def test_init_makes_root_and_issuing_ca(
    tmp_path: Path, kind: str, key_type: type, size: int, hash_name: str
) -> None:
    directory = tmp_path / "ca"
    init_ca(directory, PASSPHRASE, ACTOR, key_kind=kind, organization="Plant A").close()
    cadir, ca = open_ca(directory)
    with cadir:
        root, issuing = cadir.root_cert, cadir.issuing_cert
        assert isinstance(ca.root_key, key_type) and isinstance(ca.issuing_key, key_type)
        assert ca.issuing_key.key_size == size
        root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
        issuing_bc = issuing.extensions.get_extension_for_class(x509.BasicConstraints)
        assert root_bc.critical and root_bc.value.ca
        assert issuing_bc.critical and issuing_bc.value.ca and issuing_bc.value.path_length == 0
        for cert in (root, issuing):
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            assert usage.key_cert_sign and usage.crl_sign
            assert cert.signature_hash_algorithm is not None
            assert cert.signature_hash_algorithm.name == hash_name
            assert cert.serial_number >= 1 << 64
        issuing.verify_directly_issued_by(root)
        root.verify_directly_issued_by(root)
        assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Plant A"
        assert [r.profile for r in cadir.store.all()] == ["root-ca", "issuing-ca"]


def test_files_are_0600_in_a_0700_directory_and_keys_are_encrypted_pkcs8(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    old_umask = os.umask(0o022)
    try:
        init_ca(directory, PASSPHRASE, ACTOR, key_kind="ecdsa-p256").close()
    finally:
        os.umask(old_umask)
    assert _mode(directory) == 0o700
    files = sorted(p.name for p in directory.iterdir())
    assert {"root-ca.key", "issuing-ca.key", "root-ca.pem", "issuing-ca.pem", "pki.sqlite"} <= set(files)
    for path in directory.iterdir():
        assert _mode(path) == 0o600, path.name
    for name in ("root-ca.key", "issuing-ca.key"):
        text = (directory / name).read_text()
        assert text.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    old_umask = os.umask(0o022)
    try:
        with CaDirectory(directory, ACTOR) as cadir:
            cadir.list_certificates()
            live = {p.name: _mode(p) for p in directory.iterdir()}
    finally:
        os.umask(old_umask)
    assert "pki.sqlite-wal" in live  # WAL mode, and its side files inherit the database's 0600
    assert set(live.values()) == {0o600}


def test_unlock_without_or_with_a_wrong_passphrase_fails_clearly(ca_dir: Path) -> None:
    with CaDirectory(ca_dir, ACTOR) as cadir:
        before = len(cadir.store.audit.records())
        with pytest.raises(CaUnavailable) as missing:
            cadir.unlock(None)
        assert missing.value.code == "passphrase_required"
        with pytest.raises(CaUnavailable) as wrong:
            cadir.unlock(b"not the passphrase")
        assert wrong.value.code == "wrong_passphrase"
        assert "\n" not in str(wrong.value)
        audit = cadir.store.audit.records()
        assert len(audit) == before + 2
        assert [a.result.split(":")[1].strip() for a in audit[-2:]] == [
            "passphrase_required",
            "wrong_passphrase",
        ]


def test_unsafe_directory_permissions_are_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    init_ca(directory, PASSPHRASE, ACTOR, key_kind="ecdsa-p256").close()
    directory.chmod(0o755)
    with pytest.raises(CaUnavailable) as info:
        CaDirectory(directory, ACTOR)
    assert info.value.code == "unsafe_permissions"
    directory.chmod(0o700)
    (directory / "issuing-ca.key").chmod(0o644)
    with CaDirectory(directory, ACTOR) as cadir, pytest.raises(CaUnavailable) as key_info:
        cadir.unlock(PASSPHRASE)
    assert key_info.value.code == "unsafe_permissions"


def test_init_refuses_a_non_empty_directory_and_short_passphrases(tmp_path: Path, ca_dir: Path) -> None:
    with pytest.raises(Conflict) as info:
        init_ca(ca_dir, PASSPHRASE, ACTOR, key_kind="ecdsa-p256")
    assert info.value.code == "directory_not_empty"
    with pytest.raises(RequestRefused) as short:
        init_ca(tmp_path / "new", b"short", ACTOR, key_kind="ecdsa-p256")
    assert short.value.code == "passphrase_too_short"
    assert not (tmp_path / "new").exists()


def test_opening_a_directory_that_is_not_a_pki(tmp_path: Path) -> None:
    with pytest.raises(CaUnavailable) as info:
        CaDirectory(tmp_path, ACTOR)
    assert info.value.code == "not_initialised"


# --- serials --------------------------------------------------------------------------------------------


def test_random_serials_have_at_least_64_bits_and_fit_20_octets() -> None:
    serials = {random_serial() for _ in range(500)}
    assert len(serials) == 500
    assert all((1 << 64) <= s < (1 << 159) for s in serials)


def test_store_enforces_unique_serial_per_issuer(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    issued = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app")
    row = ca.dir.find(issued.certificate.serial_number)
    with pytest.raises(sqlite3.IntegrityError):
        ca.store.insert(
            issuer=row.issuer,
            serial=issued.certificate.serial_number,
            profile="tls-client",
            subject="CN=dup",
            sans=[],
            key_type="rsa-2048",
            not_before=row.not_before,
            not_after=row.not_after,
            sha256="0" * 64,
            der=b"x",
            created_at=row.created_at,
        )
    # The same serial under another issuer is a different certificate.
    ca.store.insert(
        issuer="CN=someone else",
        serial=issued.certificate.serial_number,
        profile="tls-client",
        subject="CN=other",
        sans=[],
        key_type="rsa-2048",
        not_before=row.not_before,
        not_after=row.not_after,
        sha256="1" * 64,
        der=b"y",
        created_at=row.created_at,
    )


def test_colliding_serial_source_draws_again(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    first = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app").certificate.serial_number
    draws = iter([first, first, (1 << 100) + 12345])
    ca.serial_source = lambda: next(draws)
    second = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app").certificate.serial_number
    assert second == (1 << 100) + 12345


def test_a_source_that_only_collides_is_refused_without_a_row(
    ca: CertificateAuthority, make_csr: CsrMaker
) -> None:
    taken = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app").certificate.serial_number
    ca.serial_source = lambda: taken
    before = ca.store.count()
    with pytest.raises(Conflict) as info:
        ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app")
    assert info.value.code == "serial_collision"
    assert ca.store.count() == before


# --- validity --------------------------------------------------------------------------------------------


def test_default_validity_is_one_year_with_backdated_not_before(
    ca: CertificateAuthority, make_csr: CsrMaker
) -> None:
    now = dt.datetime.now(dt.UTC)
    cert = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app").certificate
    backdate = now - cert.not_valid_before_utc
    assert dt.timedelta(minutes=4) < backdate < dt.timedelta(minutes=6)
    lifetime = cert.not_valid_after_utc - now
    assert dt.timedelta(days=364, hours=23) < lifetime <= dt.timedelta(days=365, seconds=1)


def test_validity_is_capped(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    cert = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app", days=30).certificate
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    before = ca.store.count()
    with pytest.raises(RequestRefused) as info:
        ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app", days=5000)
    assert info.value.code == "validity_too_long"
    assert ca.store.count() == before


def test_configured_cap_applies(tmp_path: Path, make_csr: CsrMaker) -> None:
    init_ca(tmp_path / "ca", PASSPHRASE, ACTOR, key_kind="ecdsa-p256", max_validity_days=90).close()
    cadir, ca = open_ca(tmp_path / "ca")
    with cadir:
        ca.issue_csr(make_csr(sans=OPCUA_SANS[:2]), "opcua-app", days=90)
        with pytest.raises(RequestRefused, match="at most 90"):
            ca.issue_csr(make_csr(sans=OPCUA_SANS[:2]), "opcua-app")


# --- generated keys ---------------------------------------------------------------------------------------


def test_generated_key_issuance(ca: CertificateAuthority) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-7")])
    issued = ca.issue_generated(subject, [dns("sensor-7.plant.local")], "tls-client", key_kind="ecdsa-p256")
    assert issued.private_key is not None
    assert issued.certificate.public_key() == issued.private_key.public_key()
    row = ca.dir.find(issued.certificate.serial_number)
    assert row.key_generated and row.profile == "tls-client"


def test_generated_key_request_checked_before_generation(ca: CertificateAuthority) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc1\x00.evil")])
    before = ca.store.count()
    with pytest.raises(RequestRefused) as info:
        ca.issue_generated(subject, [], "tls-client", key_kind="ecdsa-p256")
    assert info.value.code == "subject_control_character"
    with pytest.raises(RequestRefused) as wildcard:
        ca.issue_generated(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")]), [dns("*.plant.local")], "tls-server"
        )
    assert wildcard.value.code == "san_wildcard"
    assert ca.store.count() == before


# --- renewal ---------------------------------------------------------------------------------------------


def test_renew_with_the_same_key(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    old = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app").certificate
    new = ca.renew(old.serial_number, same_key=True).certificate
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject and new.public_key() == old.public_key()
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName) == (
        old.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    )
    new_row = ca.dir.find(new.serial_number)
    assert new_row.renewal_of == ca.dir.find(old.serial_number).id
    assert ca.dir.find(old.serial_number).status == "valid"


def test_renew_with_a_new_key_from_a_csr_and_revoke_old(
    ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    old = ca.issue_csr(build_csr(rsa_key, cn="plc9", sans=OPCUA_SANS), "opcua-app").certificate
    renewed = ca.renew(old.serial_number, csr=build_csr(ec_key, cn="plc9"), revoke_old=True).certificate
    assert renewed.public_key() == ec_key.public_key()
    assert renewed.subject == old.subject
    old_row = ca.dir.find(old.serial_number)
    assert old_row.status == "revoked" and old_row.revocation_reason == "superseded"
    issuing_crl, _ = ca.dir.current_crls()
    assert issuing_crl.get_revoked_certificate_by_serial_number(old.serial_number) is not None


def test_renew_refusals(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    old = ca.issue_csr(make_csr(cn="plc2", sans=OPCUA_SANS), "opcua-app").certificate
    with pytest.raises(RequestRefused) as differs:
        ca.renew(old.serial_number, csr=make_csr(cn="someone-else"))
    assert differs.value.code == "renew_subject_differs"
    with pytest.raises(NotFound):
        ca.renew(12345, same_key=True)
    with pytest.raises(RequestRefused):
        ca.renew(old.serial_number)
    ca.revoke(format(old.serial_number, "x"))
    with pytest.raises(Conflict) as revoked:
        ca.renew(old.serial_number, same_key=True)
    assert revoked.value.code == "renew_revoked"


def test_renew_generated_key(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    old = ca.issue_csr(make_csr(cn="plc3", sans=OPCUA_SANS), "opcua-app").certificate
    issued = ca.renew(old.serial_number, generate_key_kind="ecdsa-p256")
    assert issued.private_key is not None
    assert issued.certificate.public_key() == issued.private_key.public_key()


# --- audit: exactly one record per operation ---------------------------------------------------------------


def test_every_operation_writes_exactly_one_audit_record(
    tmp_path: Path, ca: CertificateAuthority, make_csr: CsrMaker
) -> None:
    audit = ca.store.audit

    def one_more(action: object, what: str) -> None:
        before = len(audit.records())
        try:
            action()  # type: ignore[operator]
        except RequestRefused:
            pass
        records = audit.records()
        assert len(records) == before + 1, what
        assert records[-1].what == what and records[-1].who == ACTOR

    serial = ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app").certificate.serial_number
    one_more(lambda: ca.issue_csr(make_csr(sans=OPCUA_SANS), "opcua-app"), "pki.issue")
    one_more(lambda: ca.issue_csr(b"junk", "opcua-app"), "pki.issue")
    one_more(lambda: ca.renew(serial, same_key=True), "pki.renew")
    one_more(lambda: ca.revoke(format(serial, "x"), "keyCompromise"), "pki.revoke")
    one_more(ca.refresh_crls, "pki.crl")
    one_more(lambda: export(ca.dir, "pem-bundle", tmp_path / "bundle"), "pki.export")
    one_more(ca.dir.list_certificates, "pki.list")
    assert audit.verify() == []


def test_init_is_audited(tmp_path: Path) -> None:
    with init_ca(tmp_path / "ca", PASSPHRASE, ACTOR, key_kind="ecdsa-p256") as cadir:
        records = cadir.store.audit.records()
    assert [r.what for r in records] == ["pki.init"]
    assert records[0].result.startswith("ok: key=ecdsa-p256")


def test_signature_hash_of_leaf_matches_ca_key(tmp_path: Path, make_csr: CsrMaker) -> None:
    init_ca(tmp_path / "ca", PASSPHRASE, ACTOR, key_kind="ecdsa-p384").close()
    cadir, ca = open_ca(tmp_path / "ca")
    with cadir:
        cert = ca.issue_csr(make_csr(sans=OPCUA_SANS[:2]), "opcua-app").certificate
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    cert.verify_directly_issued_by(cadir.issuing_cert)


def test_store_is_wal_with_synchronous_full(ca: CertificateAuthority) -> None:
    assert ca.store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ca.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
