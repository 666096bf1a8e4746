"""The certificate authority: a root CA, an issuing CA (pathLenConstraint 0) and the operations on them.

A PKI directory (mode 0700, every file 0600) holds::

    DIR/
      config.json            key kind, validity cap, CRL lifetime, allowed SAN networks/domains
      root-ca.pem            root CA certificate
      root-ca.key            root CA private key, PKCS#8 encrypted with the passphrase
      issuing-ca.pem         issuing CA certificate (signs every device certificate)
      issuing-ca.key         issuing CA private key, PKCS#8 encrypted with the passphrase
      issuing-ca.crl.pem     current CRL of the issuing CA (rewritten on every revocation)
      root-ca.crl.pem        current CRL of the root CA
      pki.sqlite             issued certificates, CRL numbers, audit log (WAL, synchronous=FULL)

:class:`CaDirectory` opens a directory without any key (enough to list and export);
:meth:`CaDirectory.unlock` decrypts the keys and returns a :class:`CertificateAuthority` that can issue,
renew and revoke. Every operation writes exactly one audit record (``api.audit``), successful or not; a
successful one writes it in the same transaction as the change it describes.

The passphrase is bytes handed in by the caller (the CLI reads it from a file or a terminal prompt);
nothing here reads an environment variable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from api.pki import crl as crl_mod
from api.pki.csr import (
    CertRequest,
    IPNetwork,
    RequestLimits,
    SanPolicy,
    check_public_key,
    check_sans,
    check_subject,
    key_description,
    request_from_csr,
    request_from_fields,
    signature_hash_for,
)
from api.pki.errors import CaUnavailable, Conflict, NotFound, PkiError, RequestRefused
from api.pki.names import CA_KEY_KINDS as CA_KEY_KINDS
from api.pki.names import DEFAULT_MAX_VALIDITY_DAYS as DEFAULT_MAX_VALIDITY_DAYS
from api.pki.names import DEVICE_KEY_KINDS as DEVICE_KEY_KINDS
from api.pki.profiles import BACKDATE_SECONDS, Profile, get_profile, read_modbus_role
from api.pki.store import CertificateRow, PkiStore, serial_hex

logger = logging.getLogger(__name__)

MIN_PASSPHRASE_BYTES = 12
ROOT_DAYS = 20 * 365
ISSUING_DAYS = 10 * 365
SERIAL_ATTEMPTS = 4

ROOT_CERT, ROOT_KEY, ROOT_CRL = "root-ca.pem", "root-ca.key", "root-ca.crl.pem"
ISSUING_CERT, ISSUING_KEY, ISSUING_CRL = "issuing-ca.pem", "issuing-ca.key", "issuing-ca.crl.pem"
CONFIG, DATABASE = "config.json", "pki.sqlite"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --- small helpers ----------------------------------------------------------------------------------


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


def generate_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise RequestRefused(
        "key_kind_unknown", f"unknown key kind {kind!r} (one of: {', '.join(DEVICE_KEY_KINDS)})"
    )


def write_file_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file in the same directory and rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def sha256_hex(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaConfig:
    """Settings chosen at ``pki init`` and kept in ``config.json``."""

    key_kind: str = "rsa-3072"
    max_validity_days: int = DEFAULT_MAX_VALIDITY_DAYS
    crl_days: int = crl_mod.MAX_CRL_DAYS
    ip_networks: tuple[IPNetwork, ...] = field(default_factory=SanPolicy.default_networks)
    dns_suffixes: tuple[str, ...] = ()

    @property
    def san_policy(self) -> SanPolicy:
        return SanPolicy(self.ip_networks, self.dns_suffixes)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "key_kind": self.key_kind,
                "max_validity_days": self.max_validity_days,
                "crl_days": self.crl_days,
                "san_ip_networks": [str(n) for n in self.ip_networks],
                "san_dns_suffixes": list(self.dns_suffixes),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> CaConfig:
        import ipaddress

        data: dict[str, Any] = json.loads(text)
        return cls(
            key_kind=str(data["key_kind"]),
            max_validity_days=int(data["max_validity_days"]),
            crl_days=min(int(data["crl_days"]), crl_mod.MAX_CRL_DAYS),
            ip_networks=tuple(ipaddress.ip_network(n) for n in data["san_ip_networks"]),
            dns_suffixes=tuple(str(s) for s in data["san_dns_suffixes"]),
        )


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate just issued, with its private key when the CA generated it."""

    certificate: x509.Certificate
    row_id: int
    private_key: PrivateKey | None = None

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate.serial_number)


@dataclass(frozen=True, slots=True)
class Revocation:
    serial: str
    reason: str
    crl_number: int
    crl: x509.CertificateRevocationList


# --- the directory (no keys) ------------------------------------------------------------------------


def _check_private_mode(path: Path, want_dir: bool) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CaUnavailable("ca_file_missing", f"{path} is missing") from None
    if want_dir != stat.S_ISDIR(info.st_mode):
        raise CaUnavailable("ca_file_missing", f"{path} is not a {'directory' if want_dir else 'file'}")
    if info.st_mode & 0o077:
        raise CaUnavailable(
            "unsafe_permissions",
            f"{path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"chmod {'700' if want_dir else '600'} it",
        )


class CaDirectory:
    """An initialised PKI directory opened without its keys: enough to list, export and audit."""

    def __init__(self, directory: Path, actor: str) -> None:
        self.dir = directory
        self.actor = actor
        if not (directory / CONFIG).is_file():
            raise CaUnavailable(
                "not_initialised", f"{directory} is not a zonewarden PKI directory (run pki init)"
            )
        _check_private_mode(directory, want_dir=True)
        try:
            self.config = CaConfig.from_json((directory / CONFIG).read_text(encoding="utf-8"))
            self.root_cert = x509.load_pem_x509_certificate((directory / ROOT_CERT).read_bytes())
            self.issuing_cert = x509.load_pem_x509_certificate((directory / ISSUING_CERT).read_bytes())
        except (OSError, ValueError, KeyError) as exc:
            raise CaUnavailable(
                "ca_files_unreadable", f"cannot read the CA files in {directory}: {exc}"
            ) from None
        self.store = PkiStore(directory / DATABASE)
        self.issuer = self.issuing_cert.subject.rfc4514_string()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> CaDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- audit --------------------------------------------------------------------------------------

    def audit_ok(self, what: str, obj: str, detail: str = "") -> None:
        self.store.audit.append(self.actor, what, obj, f"ok{': ' + detail if detail else ''}")

    def audit_refused(self, what: str, obj: str, error: PkiError) -> None:
        # Its own transaction: the refused change (if any) was rolled back before we get here.
        self.store.audit.append(self.actor, what, obj[:512], f"refused: {error.code}: {error.message}"[:1024])

    # --- reading ------------------------------------------------------------------------------------

    def chain(self) -> list[x509.Certificate]:
        """Issuing CA then root CA (the order TLS servers send and OpenSSL bundles expect)."""
        return [self.issuing_cert, self.root_cert]

    def chain_pem(self) -> bytes:
        return b"".join(cert_pem(c) for c in self.chain())

    def crl_paths(self) -> tuple[Path, Path]:
        return self.dir / ISSUING_CRL, self.dir / ROOT_CRL

    def current_crls(self) -> list[x509.CertificateRevocationList]:
        out = []
        for path in self.crl_paths():
            try:
                out.append(x509.load_pem_x509_crl(path.read_bytes()))
            except (OSError, ValueError) as exc:
                raise CaUnavailable("crl_unreadable", f"cannot read {path}: {exc}") from None
        return out

    def list_certificates(self) -> list[CertificateRow]:
        rows = self.store.all()
        self.audit_ok("pki.list", str(self.dir), f"{len(rows)} certificates")
        return rows

    def find(self, serial: int) -> CertificateRow:
        row = self.store.get(self.issuer, serial)
        if row is None:
            raise NotFound("serial_unknown", f"no certificate with serial {serial_hex(serial)} from this CA")
        return row

    # --- unlocking ----------------------------------------------------------------------------------

    def _load_key(self, name: str, passphrase: bytes | None) -> PrivateKey:
        path = self.dir / name
        _check_private_mode(path, want_dir=False)
        data = path.read_bytes()
        try:
            key = serialization.load_pem_private_key(data, passphrase)
        except TypeError:
            if passphrase is None:
                raise CaUnavailable(
                    "passphrase_required", f"{path} is encrypted: a passphrase is needed to unlock it"
                ) from None
            raise CaUnavailable("key_not_encrypted", f"{path} is not encrypted; refusing to use it") from None
        except ValueError:
            raise CaUnavailable("wrong_passphrase", f"wrong passphrase for {path}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CaUnavailable("key_type_unsupported", f"{path} holds a {type(key).__name__}")
        return key

    def unlock(self, passphrase: bytes | None) -> CertificateAuthority:
        """Decrypt both CA keys; a missing or wrong passphrase is refused (and audited)."""
        try:
            root_key = self._load_key(ROOT_KEY, passphrase)
            issuing_key = self._load_key(ISSUING_KEY, passphrase)
            for cert, key, name in (
                (self.root_cert, root_key, ROOT_KEY),
                (self.issuing_cert, issuing_key, ISSUING_KEY),
            ):
                if cert.public_key() != key.public_key():
                    raise CaUnavailable("key_mismatch", f"{self.dir / name} does not match its certificate")
        except PkiError as exc:
            self.audit_refused("pki.unlock", str(self.dir), exc)
            raise
        return CertificateAuthority(self, root_key, issuing_key)


# --- init -------------------------------------------------------------------------------------------


def _ca_name(common_name: str, organization: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _ca_certificate(
    subject: x509.Name,
    key: PrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey,
    path_length: int | None,
    days: int,
    now: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - dt.timedelta(seconds=BACKDATE_SECONDS))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    return builder.sign(issuer_key, signature_hash_for(issuer_key))


def random_serial() -> int:
    """159 random bits: positive, fits 20 octets, far above RFC 5280 / CA/B's 64-bit minimum."""
    while True:
        value = secrets.randbits(159)
        if value >= 1 << 64:
            return value


def init_ca(
    directory: Path,
    passphrase: bytes,
    actor: str,
    *,
    key_kind: str = "rsa-3072",
    name: str = "zonewarden",
    organization: str | None = None,
    ip_networks: Sequence[IPNetwork] | None = None,
    dns_suffixes: Sequence[str] = (),
    max_validity_days: int = DEFAULT_MAX_VALIDITY_DAYS,
) -> CaDirectory:
    """Create the root and issuing CA in an empty (or new) directory and return it opened."""
    if key_kind not in CA_KEY_KINDS:
        raise RequestRefused("key_kind_unknown", f"CA key must be one of: {', '.join(CA_KEY_KINDS)}")
    if len(passphrase) < MIN_PASSPHRASE_BYTES:
        raise RequestRefused(
            "passphrase_too_short", f"passphrase must be at least {MIN_PASSPHRASE_BYTES} bytes"
        )
    if not 1 <= max_validity_days <= 3650:
        raise RequestRefused("validity_cap_invalid", "--max-days must be between 1 and 3650")
    if directory.exists():
        if not directory.is_dir():
            raise Conflict("directory_not_empty", f"{directory} exists and is not a directory")
        if any(directory.iterdir()):
            what = "already holds a PKI" if (directory / CONFIG).exists() else "is not empty"
            raise Conflict("directory_not_empty", f"{directory} {what}; refusing to initialise over it")
        directory.chmod(0o700)
    else:
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # mkdir's mode is filtered by the umask

    config = CaConfig(
        key_kind=key_kind,
        max_validity_days=max_validity_days,
        ip_networks=tuple(ip_networks) if ip_networks is not None else SanPolicy.default_networks(),
        dns_suffixes=tuple(dns_suffixes),
    )
    now = utc_now()
    root_key = generate_key(key_kind)
    issuing_key = generate_key(key_kind)
    root_cert = _ca_certificate(
        _ca_name(f"{name} Root CA", organization), root_key, None, root_key, None, ROOT_DAYS, now
    )
    issuing_cert = _ca_certificate(
        _ca_name(f"{name} Issuing CA", organization), issuing_key, root_cert, root_key, 0, ISSUING_DAYS, now
    )
    encryption = serialization.BestAvailableEncryption(passphrase)
    for file_name, key in ((ROOT_KEY, root_key), (ISSUING_KEY, issuing_key)):
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        write_file_atomic(directory / file_name, pem, 0o600)
    write_file_atomic(directory / ROOT_CERT, cert_pem(root_cert), 0o600)
    write_file_atomic(directory / ISSUING_CERT, cert_pem(issuing_cert), 0o600)
    write_file_atomic(directory / CONFIG, config.to_json().encode() + b"\n", 0o600)

    cadir = CaDirectory(directory, actor)
    ca = CertificateAuthority(cadir, root_key, issuing_key)
    store = cadir.store
    with store.transaction():
        for cert, profile in ((root_cert, "root-ca"), (issuing_cert, "issuing-ca")):
            store.insert(
                issuer=cert.issuer.rfc4514_string(),
                serial=cert.serial_number,
                profile=profile,
                subject=cert.subject.rfc4514_string(),
                sans=[],
                key_type=key_kind,
                not_before=iso(cert.not_valid_before_utc),
                not_after=iso(cert.not_valid_after_utc),
                sha256=sha256_hex(cert),
                der=cert.public_bytes(serialization.Encoding.DER),
                created_at=iso(now),
            )
        ca.publish_crls(now)
        store.audit.append(
            actor,
            "pki.init",
            str(directory),
            f"ok: key={key_kind} root={serial_hex(root_cert.serial_number)} "
            f"issuing={serial_hex(issuing_cert.serial_number)}",
        )
    return cadir


# --- the unlocked CA --------------------------------------------------------------------------------


class CertificateAuthority:
    """Issue, renew and revoke with the issuing CA; publish CRLs for both CAs."""

    def __init__(
        self,
        directory: CaDirectory,
        root_key: PrivateKey,
        issuing_key: PrivateKey,
        serial_source: Callable[[], int] = random_serial,
        limits: RequestLimits | None = None,
    ) -> None:
        self.dir = directory
        self.store = directory.store
        self.root_key = root_key
        self.issuing_key = issuing_key
        self.serial_source = serial_source
        self.limits = limits or RequestLimits()

    @property
    def config(self) -> CaConfig:
        return self.dir.config

    # --- issuance -----------------------------------------------------------------------------------

    def _validity(
        self, profile: Profile, days: int | None, now: dt.datetime
    ) -> tuple[dt.datetime, dt.datetime]:
        wanted = profile.default_days if days is None else days
        cap = min(profile.max_days, self.config.max_validity_days)
        if wanted < 1:
            raise RequestRefused("validity_invalid", f"validity of {wanted} days")
        if wanted > cap:
            raise RequestRefused(
                "validity_too_long", f"{wanted} days requested, profile {profile.name} allows at most {cap}"
            )
        not_after = now + dt.timedelta(days=wanted)
        if not_after > self.dir.issuing_cert.not_valid_after_utc:
            raise RequestRefused("validity_beyond_ca", "the certificate would outlive the issuing CA")
        return now - dt.timedelta(seconds=BACKDATE_SECONDS), not_after

    def _build(
        self,
        request: CertRequest,
        profile: Profile,
        serial: int,
        not_before: dt.datetime,
        not_after: dt.datetime,
        role: str | None,
    ) -> x509.Certificate:
        issuing = self.dir.issuing_cert
        ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(issuing.subject)
            .public_key(request.public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(profile.key_usage(request.public_key), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(profile.eku)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
        )
        if request.sans:
            # RFC 5280 §4.2.1.6: critical when the subject is empty.
            builder = builder.add_extension(
                x509.SubjectAlternativeName([s.to_general_name() for s in request.sans]),
                critical=not request.subject,
            )
        for extension in profile.extra_extensions(role):
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self.issuing_key, signature_hash_for(self.issuing_key))

    def _issue_in_transaction(
        self,
        request: CertRequest,
        profile: Profile,
        days: int | None,
        role: str | None,
        key_generated: bool,
        renewal_of: int | None = None,
    ) -> tuple[x509.Certificate, int]:
        """Check against the profile, sign, insert; the caller holds the transaction."""
        profile.check(request.subject, request.sans, role)
        now = utc_now()
        not_before, not_after = self._validity(profile, days, now)
        for _ in range(SERIAL_ATTEMPTS):
            serial = self.serial_source()
            if not 0 < serial < 1 << 159:
                raise RequestRefused("serial_source_invalid", "serial source gave a value outside 1..2**159")
            if self.store.serial_taken(self.dir.issuer, serial):
                logger.warning("serial %s already used by this issuer; drawing another", serial_hex(serial))
                continue
            cert = self._build(request, profile, serial, not_before, not_after, role)
            row_id = self.store.insert(
                issuer=self.dir.issuer,
                serial=serial,
                profile=profile.name,
                subject=request.subject.rfc4514_string(),
                sans=[str(s) for s in request.sans],
                key_type=key_description(request.public_key),
                not_before=iso(cert.not_valid_before_utc),
                not_after=iso(cert.not_valid_after_utc),
                sha256=sha256_hex(cert),
                der=cert.public_bytes(serialization.Encoding.DER),
                created_at=iso(now),
                key_generated=key_generated,
                renewal_of=renewal_of,
            )
            return cert, row_id
        raise Conflict("serial_collision", f"no unused serial after {SERIAL_ATTEMPTS} draws")

    def issue_csr(
        self, csr: bytes, profile_name: str, *, days: int | None = None, role: str | None = None
    ) -> Issued:
        """Issue from a PKCS#10 request (proof of possession checked)."""
        obj = f"profile={profile_name}"
        try:
            profile = get_profile(profile_name)
            request = request_from_csr(csr, self.config.san_policy, self.limits)
            obj = f"{obj} subject={request.subject.rfc4514_string()}"
            with self.store.transaction():
                cert, row_id = self._issue_in_transaction(request, profile, days, role, key_generated=False)
                self.store.audit.append(
                    self.dir.actor, "pki.issue", f"serial:{serial_hex(cert.serial_number)}", f"ok: {obj}"
                )
        except PkiError as exc:
            self.dir.audit_refused("pki.issue", obj, exc)
            raise
        return Issued(cert, row_id)

    def issue_generated(
        self,
        subject: x509.Name,
        sans: Sequence[x509.GeneralName],
        profile_name: str,
        *,
        key_kind: str = "rsa-3072",
        days: int | None = None,
        role: str | None = None,
    ) -> Issued:
        """Generate the key here, for devices that cannot make a CSR; the key is returned, not stored."""
        obj = f"profile={profile_name} subject={subject.rfc4514_string()}"
        try:
            profile = get_profile(profile_name)
            if key_kind not in DEVICE_KEY_KINDS:
                raise RequestRefused(
                    "key_kind_unknown", f"key kind must be one of: {', '.join(DEVICE_KEY_KINDS)}"
                )
            # Check the request before spending time on an RSA key generation.
            check_subject(subject, self.limits)
            checked_sans = check_sans(list(sans), self.config.san_policy, self.limits)
            profile.check(subject, checked_sans, role)
            key = generate_key(key_kind)
            request = CertRequest(
                subject, checked_sans, check_public_key(key.public_key(), self.limits), "generated"
            )
            with self.store.transaction():
                cert, row_id = self._issue_in_transaction(request, profile, days, role, key_generated=True)
                self.store.audit.append(
                    self.dir.actor,
                    "pki.issue",
                    f"serial:{serial_hex(cert.serial_number)}",
                    f"ok: {obj} key generated ({key_kind})",
                )
        except PkiError as exc:
            self.dir.audit_refused("pki.issue", obj, exc)
            raise
        return Issued(cert, row_id, key)

    def renew(
        self,
        serial: int,
        *,
        csr: bytes | None = None,
        same_key: bool = False,
        generate_key_kind: str | None = None,
        days: int | None = None,
        revoke_old: bool = False,
    ) -> Issued:
        """A new certificate with the same subject, SANs, profile (and role), on a new or the same key."""
        obj = f"serial:{serial_hex(serial)}"
        try:
            if sum((csr is not None, same_key, generate_key_kind is not None)) != 1:
                raise RequestRefused(
                    "renew_key_choice", "renew needs exactly one of: a CSR, the same key, or a generated key"
                )
            old_row = self.dir.find(serial)
            if old_row.status == "revoked":
                raise Conflict(
                    "renew_revoked", f"certificate {old_row.serial} is revoked; issue a new one instead"
                )
            old = x509.load_der_x509_certificate(old_row.der)
            profile = get_profile(old_row.profile)
            role = read_modbus_role(old) if profile.needs_role else None
            try:
                old_sans = list(old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                old_sans = []
            new_key: PrivateKey | None = None
            if csr is not None:
                from_csr = request_from_csr(csr, self.config.san_policy, self.limits)
                if from_csr.subject != old.subject:
                    raise RequestRefused(
                        "renew_subject_differs",
                        f"CSR subject {from_csr.subject.rfc4514_string()} differs from "
                        f"{old.subject.rfc4514_string()}",
                    )
                public_key: object = from_csr.public_key
            elif same_key:
                public_key = old.public_key()
            else:
                new_key = generate_key(str(generate_key_kind))
                public_key = new_key.public_key()
            request = request_from_fields(
                old.subject, old_sans, public_key, self.config.san_policy, "renewal", self.limits
            )
            with self.store.transaction():
                cert, row_id = self._issue_in_transaction(
                    request, profile, days, role, key_generated=new_key is not None, renewal_of=old_row.id
                )
                detail = f"ok: renewed as serial:{serial_hex(cert.serial_number)}"
                if revoke_old:
                    self.store.mark_revoked(old_row.id, iso(utc_now()), "superseded")
                    self.publish_crls(utc_now())
                    detail += ", old revoked (superseded)"
                self.store.audit.append(self.dir.actor, "pki.renew", obj, detail)
        except PkiError as exc:
            self.dir.audit_refused("pki.renew", obj, exc)
            raise
        return Issued(cert, row_id, new_key)

    # --- revocation ---------------------------------------------------------------------------------

    def revoke(self, serial_text: str, reason: str = "unspecified") -> Revocation:
        """Revoke one certificate and publish new CRLs before returning (A12 refusals are distinct)."""
        obj = f"serial:{serial_text.strip()[:80]}"
        try:
            reason_flag = crl_mod.parse_reason(reason)
            serial = crl_mod.parse_serial(serial_text)
            obj = f"serial:{serial_hex(serial)}"
            with self.store.transaction():
                row = self.dir.find(serial)
                if row.status == "revoked":
                    raise Conflict(
                        "already_revoked",
                        f"certificate {row.serial} was already revoked at {row.revoked_at} "
                        f"({row.revocation_reason})",
                    )
                now = utc_now()
                name = crl_mod.reason_name(reason_flag)
                self.store.mark_revoked(row.id, iso(now), name)
                issuing_crl, _ = self.publish_crls(now)
                number = issuing_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                self.store.audit.append(self.dir.actor, "pki.revoke", obj, f"ok: reason={name} crl={number}")
        except PkiError as exc:
            self.dir.audit_refused("pki.revoke", obj, exc)
            raise
        return Revocation(serial_hex(serial), name, number, issuing_crl)

    def publish_crls(
        self, now: dt.datetime | None = None
    ) -> tuple[x509.CertificateRevocationList, x509.CertificateRevocationList]:
        """Sign and write fresh CRLs for the issuing and the root CA; the caller holds the transaction."""
        moment = now or utc_now()
        this_update, next_update = iso(moment), iso(moment + dt.timedelta(days=self.config.crl_days))
        made = []
        for cert, key, file_name in (
            (self.dir.issuing_cert, self.issuing_key, ISSUING_CRL),
            (self.dir.root_cert, self.root_key, ROOT_CRL),
        ):
            issuer = cert.subject.rfc4514_string()
            entries = [
                (
                    int(r.serial, 16),
                    dt.datetime.fromisoformat(r.revoked_at or this_update),
                    crl_mod.reason_from_name(r.revocation_reason or "unspecified"),
                )
                for r in self.store.revoked(issuer)
            ]
            number = self.store.next_crl_number(issuer, this_update, next_update)
            crl = crl_mod.build_crl(cert, key, entries, number, moment, self.config.crl_days)
            write_file_atomic(self.dir.dir / file_name, crl.public_bytes(serialization.Encoding.PEM), 0o600)
            made.append(crl)
        return made[0], made[1]

    def refresh_crls(self) -> x509.CertificateRevocationList:
        """``pki crl``: new CRLs (numbers incremented) for both CAs; returns the issuing CA's."""
        try:
            with self.store.transaction():
                issuing_crl, _ = self.publish_crls()
                number = issuing_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                self.store.audit.append(self.dir.actor, "pki.crl", self.dir.issuer, f"ok: crl={number}")
        except PkiError as exc:
            self.dir.audit_refused("pki.crl", self.dir.issuer, exc)
            raise
        return issuing_crl


def pkcs12_bytes(issued: Issued, chain: Sequence[x509.Certificate], passphrase: bytes, name: str) -> bytes:
    """PKCS#12 with the generated key, its certificate and the CA chain; PBES2 AES-256-CBC, SHA-256 MAC."""
    if issued.private_key is None:
        raise RequestRefused("no_private_key", "this certificate's key was not generated by the CA")
    if len(passphrase) < 8:
        raise RequestRefused("p12_passphrase_too_short", "the PKCS#12 passphrase must be at least 8 bytes")
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(100_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), issued.private_key, issued.certificate, list(chain), encryption
    )
