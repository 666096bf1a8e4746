"""The PKI over HTTP: CA info, issue, list, get, renew, revoke, CRL, trust bundle; EST (RFC 7030)."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from zw_api_env import ApiEnv

from api.pki.ca import DATABASE
from api.pki.store import PkiStore

PKI = "/api/v1/pki"


def issue(env: ApiEnv, csr: str, profile: str = "tls-client", **extra: object) -> dict[str, object]:
    r = env.client.post(
        f"{PKI}/certificates", headers=env.auth("pki-admin"), json={"csr": csr, "profile": profile, **extra}
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def cert_count(env: ApiEnv) -> int:
    assert env.settings.pki_dir is not None
    store = PkiStore(env.settings.pki_dir / DATABASE)
    try:
        return store.count()
    finally:
        store.close()


def test_ca_info_and_trust_bundle(env: ApiEnv) -> None:
    info = env.client.get(f"{PKI}/ca", headers=env.auth("viewer")).json()
    assert info["key_kind"] == "ecdsa-p256" and info["can_issue"] is True
    assert "Root CA" in info["root"]["subject"] and "Issuing CA" in info["issuing"]["subject"]
    bundle = env.client.get(f"{PKI}/trust-bundle", headers=env.auth("viewer"))
    certs = x509.load_pem_x509_certificates(bundle.content)
    assert [format(c.serial_number, "x") for c in certs] == [
        info["issuing"]["serial"],
        info["root"]["serial"],
    ]


def test_issue_list_get_renew_revoke_crl(env: ApiEnv, csr_pem: Callable[..., str]) -> None:
    issued = issue(env, csr_pem(cn="hmi-7"))
    cert = x509.load_pem_x509_certificate(str(issued["certificate_pem"]).encode())
    assert cert.subject.rfc4514_string() == "CN=hmi-7"
    serial = str(issued["serial"])

    listed = env.client.get(
        f"{PKI}/certificates", headers=env.auth("viewer"), params={"q": "hmi-7", "status": "valid"}
    ).json()
    assert [c["serial"] for c in listed["items"]] == [serial] and listed["total"] == 1
    one = env.client.get(f"{PKI}/certificates/{serial}", headers=env.auth("viewer")).json()
    assert one["status"] == "valid" and one["pem"] == issued["certificate_pem"]

    renewed = env.client.post(
        f"{PKI}/certificates/{serial}/renew", headers=env.auth("pki-admin"), json={"revoke_old": True}
    )
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["serial"] != serial

    r = env.client.post(
        f"{PKI}/certificates/{renewed.json()['serial']}/revoke",
        headers=env.auth("pki-admin"),
        json={"reason": "keyCompromise"},
    )
    assert r.status_code == 200 and r.json()["reason"] == "keyCompromise"
    crl_der = env.client.get(f"{PKI}/crl", headers=env.auth("viewer"), params={"format": "der"})
    assert crl_der.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(crl_der.content)
    revoked = {format(e.serial_number, "x") for e in crl}
    assert {serial, renewed.json()["serial"]} <= revoked
    root_crl = env.client.get(f"{PKI}/crl", headers=env.auth("viewer"), params={"ca": "root"})
    x509.load_pem_x509_crl(root_crl.content)

    whats = [row[1] for row in env.audit_rows()]
    assert whats.count("pki.issue") == 1 and whats.count("pki.renew") == 1 and whats.count("pki.revoke") == 1


def test_A12_revoke_unknown_repeated_negative_oversized(env: ApiEnv, csr_pem: Callable[..., str]) -> None:
    serial = str(issue(env, csr_pem())["serial"])
    h = env.auth("pki-admin")
    assert env.client.post(f"{PKI}/certificates/{serial}/revoke", headers=h, json={}).status_code == 200
    again = env.client.post(f"{PKI}/certificates/{serial}/revoke", headers=h, json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_revoked"
    assert env.client.post(f"{PKI}/certificates/1234abcd/revoke", headers=h, json={}).status_code == 404
    negative = env.client.post(f"{PKI}/certificates/-5/revoke", headers=h, json={})
    assert negative.status_code == 422
    huge = env.client.post(f"{PKI}/certificates/{'f' * 41}/revoke", headers=h, json={})
    assert huge.status_code == 422
    assert (
        env.client.post(f"{PKI}/certificates/{'8' + '0' * 39}/revoke", headers=h, json={}).status_code == 422
    )
    assert env.client.post(f"{PKI}/certificates/0/revoke", headers=h, json={}).status_code == 422
    bad_reason = env.client.post(f"{PKI}/certificates/{serial}/revoke", headers=h, json={"reason": "whim"})
    assert bad_reason.status_code == 422


def test_A4_unknown_serial_is_404_without_detail(env: ApiEnv) -> None:
    r = env.client.get(f"{PKI}/certificates/1234abcd", headers=env.auth("viewer"))
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "no such certificate"}}


def _csr(key: object, cn: str = "dev", sans: list[x509.GeneralName] | None = None, ca: bool = False) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    csr = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def hostile_csrs(device_key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    good = _csr(device_key)
    der = x509.load_pem_x509_csr(good.encode()).public_bytes(serialization.Encoding.DER)
    tampered = bytearray(der)
    tampered[-5] ^= 0xFF
    b64 = base64.encodebytes(bytes(tampered)).decode()
    return {
        "garbage": "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n",
        "pem_trailing_data": good + "trailing junk\n",
        "bad_signature": f"-----BEGIN CERTIFICATE REQUEST-----\n{b64}-----END CERTIFICATE REQUEST-----\n",
        "rsa_1024": _csr(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        "dsa": _csr(dsa.generate_private_key(key_size=2048)),
        "ec_p192": _csr(ec.generate_private_key(ec.SECP192R1())),
        "wildcard_san": _csr(device_key, sans=[x509.DNSName("*.plant.local")]),
        "ip_out_of_zone": _csr(device_key, sans=[x509.IPAddress(ipaddress.ip_address("8.8.8.8"))]),
        "ten_thousand_sans": _csr(device_key, sans=[x509.DNSName(f"d{i}.x") for i in range(10_000)]),
        "ca_true": _csr(device_key, ca=True),
        "nul_in_cn": _csr(device_key, cn="plc1\x00.evil"),
    }


def test_A11_hostile_csrs_refused_400_and_nothing_stored(
    env: ApiEnv, device_key: ec.EllipticCurvePrivateKey
) -> None:
    before = cert_count(env)
    for name, csr in hostile_csrs(device_key).items():
        r = env.client.post(
            f"{PKI}/certificates", headers=env.auth("pki-admin"), json={"csr": csr, "profile": "tls-client"}
        )
        # The 10 k SAN request is larger than the body cap: 413 before anything parses it.
        expected = (413, 422) if name == "ten_thousand_sans" else (400,)
        assert r.status_code in expected, (name, r.status_code, r.text)
        assert r.json()["error"]["message"], name
    assert cert_count(env) == before


def test_A6_A11_oversized_csrs_refused_before_parsing(env: ApiEnv) -> None:
    before = cert_count(env)
    r = env.client.post(
        f"{PKI}/certificates",
        headers=env.auth("pki-admin"),
        json={"csr": "A" * (10 << 20), "profile": "tls-client"},
    )
    assert r.status_code == 413
    r = env.client.post(
        f"{PKI}/certificates",
        headers=env.auth("pki-admin"),
        json={"csr": "A" * (1 << 20), "profile": "tls-client"},
    )
    assert r.status_code == 422  # over the schema's maxLength
    assert cert_count(env) == before


def test_pki_unconfigured_is_503(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env(pki_dir=None, pki_passphrase_file=None)
    r = env.client.get(f"{PKI}/ca", headers=env.auth("viewer"))
    assert r.status_code == 503 and r.json()["error"]["code"] == "pki_not_configured"


def test_pki_locked_reads_but_does_not_issue(
    make_env: Callable[..., ApiEnv], csr_pem: Callable[..., str]
) -> None:
    env = make_env(pki_passphrase_file=None)
    assert env.client.get(f"{PKI}/ca", headers=env.auth("viewer")).json()["can_issue"] is False
    r = env.client.post(
        f"{PKI}/certificates", headers=env.auth("pki-admin"), json={"csr": csr_pem(), "profile": "tls-client"}
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "ca_locked"


# --- EST (RFC 7030) ---------------------------------------------------------------------------------


def est_body(csr_pem_text: str) -> bytes:
    der = x509.load_pem_x509_csr(csr_pem_text.encode()).public_bytes(serialization.Encoding.DER)
    return base64.encodebytes(der)


def certs_from_pkcs7(body: bytes) -> list[x509.Certificate]:
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))


def test_est_cacerts(env: ApiEnv) -> None:
    r = env.client.get("/.well-known/est/cacerts", headers=env.auth("viewer"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/pkcs7-mime")
    assert r.headers["content-transfer-encoding"] == "base64"
    subjects = sorted(c.subject.rfc4514_string() for c in certs_from_pkcs7(r.content))
    assert subjects == ["CN=zonewarden Issuing CA", "CN=zonewarden Root CA"]


def test_est_simpleenroll_and_simplereenroll(env: ApiEnv, csr_pem: Callable[..., str]) -> None:
    h = {**env.auth("pki-admin"), "Content-Type": "application/pkcs10"}
    r = env.client.post("/.well-known/est/simpleenroll", headers=h, content=est_body(csr_pem(cn="rtu-3")))
    assert r.status_code == 200, r.text
    (first,) = certs_from_pkcs7(r.content)
    assert first.subject.rfc4514_string() == "CN=rtu-3"

    new_key = ec.generate_private_key(ec.SECP256R1())
    r = env.client.post(
        "/.well-known/est/simplereenroll", headers=h, content=est_body(csr_pem(cn="rtu-3", key=new_key))
    )
    assert r.status_code == 200, r.text
    (second,) = certs_from_pkcs7(r.content)
    assert second.serial_number != first.serial_number
    assert second.public_key() == new_key.public_key()

    r = env.client.post("/.well-known/est/simplereenroll", headers=h, content=est_body(csr_pem(cn="nobody")))
    assert r.status_code == 404

    r = env.client.post("/.well-known/est/opcua-app/simpleenroll", headers=h, content=est_body(csr_pem()))
    assert r.status_code == 400  # opcua-app needs an ApplicationUri SAN: the profile is applied


def test_est_refuses_bad_bodies(env: ApiEnv, csr_pem: Callable[..., str]) -> None:
    h = {**env.auth("pki-admin"), "Content-Type": "application/pkcs10"}
    assert (
        env.client.post("/.well-known/est/simpleenroll", headers=h, content=b"!!not base64!!").status_code
        == 400
    )
    assert (
        env.client.post(
            "/.well-known/est/simpleenroll", headers=h, content=base64.b64encode(b"garbage")
        ).status_code
        == 400
    )
    wrong_type = {**env.auth("pki-admin"), "Content-Type": "application/json"}
    r = env.client.post("/.well-known/est/simpleenroll", headers=wrong_type, content=est_body(csr_pem()))
    assert r.status_code == 415
    viewer = {**env.auth("viewer"), "Content-Type": "application/pkcs10"}
    assert (
        env.client.post(
            "/.well-known/est/simpleenroll", headers=viewer, content=est_body(csr_pem())
        ).status_code
        == 403
    )


@pytest.mark.parametrize("label", ["../x", "no-such-profile"])
def test_est_unknown_label(env: ApiEnv, label: str) -> None:
    r = env.client.get(f"/.well-known/est/{label}/cacerts", headers=env.auth("viewer"))
    assert r.status_code in (400, 404, 422)


def test_schema_literals_follow_the_pki_constants() -> None:
    from typing import get_args

    from api.pki.crl import REASON_NAMES
    from api.pki.profiles import PROFILES
    from api.schemas.pki import ProfileName, ReasonName

    assert list(get_args(ProfileName)) == list(PROFILES)
    assert list(get_args(ReasonName)) == list(REASON_NAMES)
