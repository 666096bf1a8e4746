"""CSR checks and HOSTILE_INPUTS row A11: every hostile request refused with a reason, no row written."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID
from pki_helpers import CsrMaker, build_csr, dns, ip, uri

from api.pki.ca import CertificateAuthority
from api.pki.csr import RequestLimits, SanPolicy, load_csr_bytes, request_from_csr
from api.pki.errors import RequestRefused

OPCUA_SANS = [uri("urn:plant:plc1"), dns("plc1.plant.local"), ip("10.10.1.5")]


def _refused(ca: CertificateAuthority, csr: bytes, code: str, profile: str = "opcua-app") -> RequestRefused:
    """Issue must refuse with ``code``; the certificate table must not change; one audit row says so."""
    rows_before = ca.store.count()
    audit_before = len(ca.store.audit.records())
    with pytest.raises(RequestRefused) as info:
        ca.issue_csr(csr, profile)
    assert info.value.code == code, str(info.value)
    assert info.value.status == 400
    assert ca.store.count() == rows_before
    audit = ca.store.audit.records()
    assert len(audit) == audit_before + 1
    assert audit[-1].what == "pki.issue" and audit[-1].result.startswith(f"refused: {code}")
    return info.value


# --- A11, one test per case ---------------------------------------------------------------------------


def test_A11_garbage_der_refused(ca: CertificateAuthority) -> None:
    _refused(ca, b"\x30\x82\x01\x00" + b"\xa5" * 300, "csr_malformed")


def test_A11_garbage_text_refused(ca: CertificateAuthority) -> None:
    _refused(ca, b"hello, I am a certificate request", "csr_malformed")


def test_A11_pem_with_trailing_data_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(sans=OPCUA_SANS) + b"trailing junk\n", "csr_not_pem_block")


def test_A11_two_pem_blocks_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(sans=OPCUA_SANS) + make_csr(sans=OPCUA_SANS), "csr_not_pem_block")


def test_A11_der_with_trailing_bytes_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(sans=OPCUA_SANS, pem=False) + b"\x00", "csr_malformed")


def test_A11_invalid_signature_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    der = bytearray(make_csr(sans=OPCUA_SANS, pem=False))
    der[-5] ^= 0x01  # inside the signature BIT STRING
    _refused(ca, bytes(der), "csr_signature_invalid")


def test_A11_signature_by_another_key_refused(
    ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    """Proof of possession: the CSR carries key A but is signed by key B."""
    good = x509.load_pem_x509_csr(build_csr(rsa_key, sans=OPCUA_SANS))
    other = x509.load_pem_x509_csr(build_csr(rsa.generate_private_key(65537, 2048), sans=OPCUA_SANS))
    # Splice: TBS (subject, key A) from one, signature from the other.
    tbs = good.tbs_certrequest_bytes
    sig_alg = other.public_bytes(serialization.Encoding.DER)
    spliced = _sequence(tbs + _alg_and_signature(sig_alg))
    _refused(ca, spliced, "csr_signature_invalid")


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _sequence(content: bytes) -> bytes:
    return b"\x30" + _der_len(len(content)) + content


def _alg_and_signature(csr_der: bytes) -> bytes:
    """The signatureAlgorithm and signature fields (everything after the TBS) of a DER CSR."""
    csr = x509.load_der_x509_csr(csr_der)
    tbs = csr.tbs_certrequest_bytes
    start = csr_der.index(tbs) + len(tbs)
    return csr_der[start:]


def test_A11_rsa_1024_refused(ca: CertificateAuthority) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _refused(ca, build_csr(key, sans=OPCUA_SANS), "key_too_small")


def test_A11_dsa_refused(ca: CertificateAuthority) -> None:
    key = dsa.generate_private_key(key_size=2048)
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dsa")])
    )
    csr = csr.add_extension(x509.SubjectAlternativeName(OPCUA_SANS), critical=False)
    _refused(
        ca, csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), "key_type_not_allowed"
    )


def test_A11_ec_p192_refused(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP192R1())
    _refused(ca, build_csr(key, sans=OPCUA_SANS), "key_curve_not_allowed")


def test_A11_wildcard_san_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(sans=[uri("urn:plant:plc1"), dns("*.plant.local")]), "san_wildcard")


def test_A11_out_of_zone_ip_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    # The module CA allows 10.10.0.0/16 and loopback only.
    err = _refused(ca, make_csr(sans=[uri("urn:plant:plc1"), ip("10.20.0.7")]), "san_ip_out_of_zone")
    assert "10.20.0.7" in str(err)
    _refused(ca, make_csr(sans=[uri("urn:plant:plc1"), ip("8.8.8.8")]), "san_ip_out_of_zone")


def test_A11_ten_thousand_sans_refused(ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey) -> None:
    sans = [dns(f"h{i}.plant.local") for i in range(10_000)]
    _refused(ca, build_csr(ec_key, sans=sans), "csr_too_large")


def test_A11_101_sans_under_the_size_cap_refused(
    ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    sans = [uri("urn:plant:plc1")] + [dns(f"h{i}.local") for i in range(100)]
    csr = build_csr(ec_key, sans=sans)
    assert len(csr) < RequestLimits().max_csr_bytes
    _refused(ca, csr, "too_many_sans")


def test_A11_basic_constraints_ca_true_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    csr = make_csr(sans=OPCUA_SANS, extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    _refused(ca, csr, "csr_requests_ca")


def test_A11_key_cert_sign_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    _refused(ca, make_csr(sans=OPCUA_SANS, extensions=[(usage, True)]), "csr_requests_cert_sign")


def test_A11_nul_in_common_name_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    err = _refused(ca, make_csr(cn="plc1\x00.evil", sans=OPCUA_SANS), "subject_control_character")
    assert "\x00" not in str(err)  # the reason is printable on one line
    assert "plc1\\x00.evil" in str(err)


def test_A11_one_megabyte_subject_refused(
    ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 64)] * 16_400)
    csr = build_csr(ec_key, subject=subject, sans=OPCUA_SANS)
    assert len(csr) > 1_000_000
    _refused(ca, csr, "csr_too_large")


def test_A11_subject_over_one_kib_under_the_size_cap_refused(
    ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i:02d}" + "y" * 50) for i in range(20)]
    )
    _refused(ca, build_csr(ec_key, subject=subject, sans=OPCUA_SANS), "subject_too_large")


# --- more checks ----------------------------------------------------------------------------------------


def test_sha224_signed_csr_refused(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    _refused(ca, build_csr(rsa_key, sans=OPCUA_SANS, hash_alg=hashes.SHA224()), "csr_weak_signature_hash")


def test_sha1_signed_csr_from_openssl_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, csr = tmp_path / "k.pem", tmp_path / "r.csr"
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha1",
            "-keyout",
            str(key),
            "-subj",
            "/CN=old-plc",
            "-addext",
            "subjectAltName=URI:urn:plant:old",
            "-out",
            str(csr),
        ],
        check=True,
        capture_output=True,
    )
    _refused(ca, csr.read_bytes(), "csr_weak_signature_hash")


def test_rsa_exponent_3_refused(ca: CertificateAuthority) -> None:
    key = rsa.generate_private_key(public_exponent=3, key_size=2048)
    _refused(ca, build_csr(key, sans=OPCUA_SANS), "key_weak_exponent")


def test_wildcard_in_common_name_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(cn="*.plant.local", sans=OPCUA_SANS), "subject_wildcard")


def test_control_character_in_dns_san_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(sans=[uri("urn:plant:plc1"), dns("plc1\x00.evil.com")]), "san_control_character")


def test_email_san_not_allowed(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(sans=[*OPCUA_SANS, x509.RFC822Name("a@b.c")]), "san_type_not_allowed")


def test_uri_with_space_refused(ca: CertificateAuthority, make_csr: CsrMaker) -> None:
    _refused(ca, make_csr(sans=[uri("urn:plant:plc 1")]), "san_bad_uri")


def test_unknown_subject_attribute_refused(
    ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    subject = x509.Name([x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4.5"), "x")])
    _refused(ca, build_csr(ec_key, subject=subject, sans=OPCUA_SANS), "subject_attribute_not_allowed")


def test_empty_input_refused(ca: CertificateAuthority) -> None:
    _refused(ca, b"  \n", "csr_malformed")


def test_bad_base64_refused(ca: CertificateAuthority) -> None:
    bad = b"-----BEGIN CERTIFICATE REQUEST-----\nMII!!!!\n-----END CERTIFICATE REQUEST-----\n"
    _refused(ca, bad, "csr_not_pem_block")


# --- what is accepted -----------------------------------------------------------------------------------


def test_pem_der_and_new_header_all_parse(make_csr: CsrMaker) -> None:
    pem = make_csr(sans=OPCUA_SANS)
    der = make_csr(sans=OPCUA_SANS, pem=False)
    body = base64.encodebytes(der)
    legacy = b"-----BEGIN NEW CERTIFICATE REQUEST-----\n" + body + b"-----END NEW CERTIFICATE REQUEST-----\n"
    crlf = pem.replace(b"\n", b"\r\n")
    limits = RequestLimits()
    for data in (pem, der, legacy, crlf, b"\n\n" + pem + b"\n\n"):
        assert load_csr_bytes(data, limits).public_bytes(serialization.Encoding.DER) == der


def test_request_keeps_checked_sans_and_ignores_other_extensions(make_csr: CsrMaker) -> None:
    csr = make_csr(
        sans=[uri("urn:plant:plc1"), dns("PLC1.Plant.Local."), ip("10.10.1.5"), dns("plc1.plant.local")],
        extensions=[(x509.OCSPNoCheck(), False)],
    )
    policy = SanPolicy(SanPolicy.default_networks())
    request = request_from_csr(csr, policy)
    assert [str(s) for s in request.sans] == ["uri:urn:plant:plc1", "dns:plc1.plant.local", "ip:10.10.1.5"]
    assert request.ignored_extensions == ("1.3.6.1.5.5.7.48.1.5",)


def test_dns_suffix_policy(make_csr: CsrMaker) -> None:
    policy = SanPolicy(SanPolicy.default_networks(), ("plant.local",))
    request_from_csr(make_csr(sans=[dns("plc1.plant.local")]), policy)
    with pytest.raises(RequestRefused) as info:
        request_from_csr(make_csr(sans=[dns("plc1.example.com")]), policy)
    assert info.value.code == "san_dns_out_of_zone"
