"""The built-in profiles: keyUsage, extendedKeyUsage, SAN rules and the Modbus/TCP Security role."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pki_helpers import build_csr, dns, ip, uri

from api.pki.ca import CertificateAuthority
from api.pki.errors import RequestRefused
from api.pki.profiles import MODBUS_ROLE_OID, PROFILES, modbus_role_extension, read_modbus_role

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def _usage(cert: x509.Certificate) -> set[str]:
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    value = ku.value
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
    ]
    out = {n for n in names if getattr(value, n)}
    assert not value.key_cert_sign and not value.crl_sign
    return out


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_opcua_app_rsa(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    sans = [uri("urn:plant:plc1"), dns("plc1.plant.local"), ip("10.10.1.5")]
    cert = ca.issue_csr(build_csr(rsa_key, sans=sans), "opcua-app").certificate
    assert _usage(cert) == {
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
    }
    assert _eku(cert) == [SERVER, CLIENT]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:plant:plc1"]
    assert not san.critical
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca


def test_opcua_app_ec_uses_key_agreement(
    ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    cert = ca.issue_csr(build_csr(ec_key, sans=[uri("urn:plant:plc1")]), "opcua-app").certificate
    assert _usage(cert) == {"digital_signature", "content_commitment", "key_agreement"}


@pytest.mark.parametrize("uris", [[], ["urn:a", "urn:b"]])
def test_opcua_app_needs_exactly_one_application_uri(
    ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey, uris: list[str]
) -> None:
    before = ca.store.count()
    with pytest.raises(RequestRefused) as info:
        ca.issue_csr(build_csr(rsa_key, sans=[dns("plc1.plant.local"), *map(uri, uris)]), "opcua-app")
    assert info.value.code == "profile_needs_application_uri"
    assert ca.store.count() == before


def test_empty_subject_makes_san_critical(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    cert = ca.issue_csr(build_csr(rsa_key, cn=None, sans=[uri("urn:plant:anon")]), "opcua-app").certificate
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_mqtt_broker(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    cert = ca.issue_csr(
        build_csr(rsa_key, cn="broker", sans=[dns("broker.plant.local")]), "mqtt-broker"
    ).certificate
    assert _eku(cert) == [SERVER]
    assert _usage(cert) == {"digital_signature", "key_encipherment"}
    with pytest.raises(RequestRefused) as info:
        ca.issue_csr(build_csr(rsa_key, cn="broker"), "mqtt-broker")
    assert info.value.code == "profile_needs_host_san"


def test_mqtt_client(ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey) -> None:
    cert = ca.issue_csr(build_csr(ec_key, cn="pump-7"), "mqtt-client").certificate
    assert _eku(cert) == [CLIENT]
    assert _usage(cert) == {"digital_signature"}
    with pytest.raises(RequestRefused) as no_cn:
        ca.issue_csr(build_csr(ec_key, cn=None, sans=[uri("urn:x")]), "mqtt-client")
    assert no_cn.value.code == "profile_needs_cn"
    with pytest.raises(RequestRefused) as ip_san:
        ca.issue_csr(build_csr(ec_key, cn="pump-7", sans=[ip("10.10.0.1")]), "mqtt-client")
    assert ip_san.value.code == "profile_san_type_not_allowed"


def test_tls_server_and_client(ca: CertificateAuthority, ec_key: ec.EllipticCurvePrivateKey) -> None:
    server = ca.issue_csr(build_csr(ec_key, cn="hmi", sans=[ip("10.10.2.2")]), "tls-server").certificate
    assert _eku(server) == [SERVER]
    assert _usage(server) == {"digital_signature", "key_agreement"}
    client = ca.issue_csr(build_csr(ec_key, cn="historian"), "tls-client").certificate
    assert _eku(client) == [CLIENT]


def test_modbus_security_role_extension(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    cert = ca.issue_csr(build_csr(rsa_key, cn="scada-1"), "modbus-security", role="Operator").certificate
    ext = cert.extensions.get_extension_for_oid(MODBUS_ROLE_OID)
    assert MODBUS_ROLE_OID.dotted_string == "1.3.6.1.4.1.50316.802.1"
    assert not ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    assert ext.value.value == b"\x0c\x08Operator"  # DER UTF8String
    assert read_modbus_role(cert) == "Operator"
    assert _eku(cert) == [SERVER, CLIENT]


def test_modbus_role_is_an_asn1_utf8string_for_openssl(
    ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    role = "Ingénieur"  # non-ASCII: UTF8String, not PrintableString
    cert = ca.issue_csr(build_csr(rsa_key, cn="eng-1"), "modbus-security", role=role).certificate
    ext_der = cert.extensions.get_extension_for_oid(MODBUS_ROLE_OID).value.public_bytes()
    (tmp_path / "role.der").write_bytes(ext_der)
    out = subprocess.run(
        ["openssl", "asn1parse", "-inform", "DER", "-in", str(tmp_path / "role.der")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "UTF8STRING" in out


def test_long_role_uses_long_form_length() -> None:
    role = "R" * 128
    ext = modbus_role_extension(role)
    assert ext.value[:3] == b"\x0c\x81\x80"


def test_modbus_security_needs_a_role(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    for role in (None, "", "Op\x00erator", "x" * 129):
        with pytest.raises(RequestRefused) as info:
            ca.issue_csr(build_csr(rsa_key, cn="scada-1"), "modbus-security", role=role)
        assert info.value.code == "profile_needs_role"


def test_role_on_another_profile_refused(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(RequestRefused) as info:
        ca.issue_csr(build_csr(rsa_key, cn="hist"), "tls-client", role="Operator")
    assert info.value.code == "profile_role_not_allowed"


def test_unknown_profile(ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(RequestRefused) as info:
        ca.issue_csr(build_csr(rsa_key), "root-ca")
    assert info.value.code == "profile_unknown"


def test_every_profile_has_aki_ski_and_non_ca_constraints(
    ca: CertificateAuthority, rsa_key: rsa.RSAPrivateKey
) -> None:
    requests = {
        "opcua-app": ({"sans": [uri("urn:p:x")]}, None),
        "mqtt-broker": ({"sans": [dns("b.local")]}, None),
        "mqtt-client": ({}, None),
        "modbus-security": ({}, "Viewer"),
        "tls-server": ({"sans": [dns("s.local")]}, None),
        "tls-client": ({}, None),
    }
    assert set(requests) == set(PROFILES)
    issuing_ski = ca.dir.issuing_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    for name, (kwargs, role) in requests.items():
        cert = ca.issue_csr(build_csr(rsa_key, **kwargs), name, role=role).certificate  # type: ignore[arg-type]
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == issuing_ski.digest
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert.verify_directly_issued_by(ca.dir.issuing_cert)
