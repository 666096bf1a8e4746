"""Revocation, CRLs, and HOSTILE_INPUTS row A12 (distinct refusals, nothing changed)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from pki_helpers import CsrMaker, dns, uri

from api.pki.ca import CertificateAuthority
from api.pki.crl import parse_reason, parse_serial
from api.pki.errors import Conflict, NotFound, PkiError, Unprocessable

SANS = [uri("urn:plant:plc1"), dns("plc1.plant.local")]


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _issue(ca: CertificateAuthority, make_csr: CsrMaker) -> x509.Certificate:
    return ca.issue_csr(make_csr(sans=SANS), "opcua-app").certificate


def _refused_revoke(ca: CertificateAuthority, serial: str) -> PkiError:
    """Revocation must be refused and leave the rows and the CRL untouched."""
    rows_before = [(r.serial, r.status) for r in ca.store.all()]
    crl_before = (ca.dir.dir / "issuing-ca.crl.pem").read_bytes()
    with pytest.raises(PkiError) as info:
        ca.revoke(serial, "keyCompromise")
    assert [(r.serial, r.status) for r in ca.store.all()] == rows_before
    assert (ca.dir.dir / "issuing-ca.crl.pem").read_bytes() == crl_before
    assert ca.store.audit.records()[-1].result.startswith(f"refused: {info.value.code}")
    return info.value


# --- A12 --------------------------------------------------------------------------------------------------


def test_A12_unknown_serial_is_404(ca: CertificateAuthority) -> None:
    err = _refused_revoke(ca, "0123456789abcdef0123")
    assert isinstance(err, NotFound) and err.status == 404 and err.code == "serial_unknown"


def test_A12_already_revoked_is_409(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    cert = _issue(ca, make_csr)
    ca.revoke(format(cert.serial_number, "x"), "superseded")
    err = _refused_revoke(ca, format(cert.serial_number, "X"))
    assert isinstance(err, Conflict) and err.status == 409 and err.code == "already_revoked"


def test_A12_negative_serial_is_422(ca: CertificateAuthority) -> None:
    err = _refused_revoke(ca, "-1f")
    assert isinstance(err, Unprocessable) and err.status == 422 and err.code == "serial_negative"


def test_A12_serial_over_20_octets_is_422(ca: CertificateAuthority) -> None:
    err = _refused_revoke(ca, "01" * 21)
    assert isinstance(err, Unprocessable) and err.status == 422 and err.code == "serial_too_long"


def test_A12_refusals_are_distinct(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    cert = _issue(ca, make_csr)
    ca.revoke(format(cert.serial_number, "x"))
    codes = set()
    for serial in ("0123456789abcdef0123", format(cert.serial_number, "x"), "-1f", "ff" * 20):
        with pytest.raises(PkiError) as info:
            ca.revoke(serial)
        codes.add((info.value.code, info.value.status))
    assert codes == {
        ("serial_unknown", 404),
        ("already_revoked", 409),
        ("serial_negative", 422),
        ("serial_too_long", 422),
    }


def test_serial_boundaries() -> None:
    assert parse_serial(format((1 << 159) - 1, "x")) == (1 << 159) - 1  # 20 octets exactly
    with pytest.raises(Unprocessable, match="21 octets"):
        parse_serial(format(1 << 159, "x"))  # top bit set: a 21st (sign) octet is needed
    assert parse_serial("0x1A2b") == 0x1A2B
    assert parse_serial("1a:2b:3c") == 0x1A2B3C
    for bad, code in (("", "serial_invalid"), ("xyz", "serial_invalid"), ("0", "serial_not_positive")):
        with pytest.raises(Unprocessable) as info:
            parse_serial(bad)
        assert info.value.code == code


def test_reason_names() -> None:
    assert parse_reason("keyCompromise") == x509.ReasonFlags.key_compromise
    assert parse_reason("key-compromise") == x509.ReasonFlags.key_compromise
    assert parse_reason("CESSATION_OF_OPERATION") == x509.ReasonFlags.cessation_of_operation
    for bad, code in (("certificateHold", "reason_not_supported"), ("bored", "reason_unknown")):
        with pytest.raises(Unprocessable) as info:
            parse_reason(bad)
        assert info.value.code == code


def test_bad_reason_refused_before_anything_changes(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    cert = _issue(ca, make_csr)
    with pytest.raises(Unprocessable):
        ca.revoke(format(cert.serial_number, "x"), "removeFromCRL")
    assert ca.dir.find(cert.serial_number).status == "valid"


# --- CRLs -------------------------------------------------------------------------------------------------


def test_each_revocation_publishes_a_new_signed_crl(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    first, second = _issue(ca, make_csr), _issue(ca, make_csr)
    number_before = _crl_number(ca.dir.current_crls()[0])

    result = ca.revoke(format(first.serial_number, "x"), "keyCompromise")
    on_disk = ca.dir.current_crls()[0]
    assert _crl_number(on_disk) == number_before + 1 == result.crl_number
    entry = on_disk.get_revoked_certificate_by_serial_number(first.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )

    ca.revoke(format(second.serial_number, "x"))  # unspecified: no reasonCode entry extension
    on_disk = ca.dir.current_crls()[0]
    assert _crl_number(on_disk) == number_before + 2
    entry = on_disk.get_revoked_certificate_by_serial_number(second.serial_number)
    assert entry is not None and len(entry.extensions) == 0
    assert on_disk.get_revoked_certificate_by_serial_number(first.serial_number) is not None

    issuing = ca.dir.issuing_cert
    assert on_disk.issuer == issuing.subject
    assert on_disk.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert on_disk.next_update_utc is not None
    lifetime = on_disk.next_update_utc - on_disk.last_update_utc
    assert dt.timedelta(days=1) <= lifetime <= dt.timedelta(days=7)
    aki = on_disk.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier
        == issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )


def test_refresh_increments_both_crl_numbers(ca: CertificateAuthority) -> None:
    issuing_before, root_before = (_crl_number(c) for c in ca.dir.current_crls())
    crl = ca.refresh_crls()
    issuing_after, root_after = (_crl_number(c) for c in ca.dir.current_crls())
    assert (issuing_after, root_after) == (issuing_before + 1, root_before + 1)
    assert _crl_number(crl) == issuing_after
    root_crl = ca.dir.current_crls()[1]
    assert root_crl.is_signature_valid(ca.dir.root_cert.public_key())  # type: ignore[arg-type]
    assert len(root_crl) == 0


def test_revocation_status_in_store(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    cert = _issue(ca, make_csr)
    ca.revoke(format(cert.serial_number, "x"), "cessationOfOperation")
    row = ca.dir.find(cert.serial_number)
    assert row.status == "revoked"
    assert row.revocation_reason == "cessationOfOperation"
    assert row.revoked_at is not None
