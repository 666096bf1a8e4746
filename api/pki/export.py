"""Trust material where devices need it.

``pem-bundle`` (for mosquitto and other OpenSSL-based brokers)::

    OUT/ca-chain.pem          issuing CA + root CA        (mosquitto ``cafile``)
    OUT/root-ca.pem           root CA alone
    OUT/issuing-ca.pem        issuing CA alone
    OUT/crl.pem               issuing CA CRL + root CA CRL (mosquitto ``crlfile``; openssl -CRLfile)
    OUT/issuing-ca.crl.pem    OUT/root-ca.crl.pem

``opcua-trustlist`` (the folder layout of OPC 10000-12 §7.3 trust lists as OPC UA stacks keep them on
disk; certificates DER ``.der``, CRLs DER ``.crl``, named ``<CN> [<SHA-1 thumbprint>]`` as the stacks
do)::

    OUT/trusted/certs/   the issuing CA: every application certificate it signs is trusted
    OUT/trusted/crl/     the issuing CA's CRL
    OUT/issuer/certs/    the root CA: needed to build the chain, not trusted on its own
    OUT/issuer/crl/      the root CA's CRL

Stacks refuse a chain whose CA has no CRL (``BadCertificateRevocationUnknown`` /
``BadCertificateIssuerRevocationUnknown``), so every CA goes out with its current CRL. Exports read the
CRLs the CA last wrote and warn when one is past its nextUpdate (run ``pki crl`` then).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from api.pki.ca import CaDirectory, cert_pem, write_file_atomic
from api.pki.errors import RequestRefused
from api.pki.names import EXPORT_FORMATS as EXPORT_FORMATS

_UNSAFE = re.compile(r"[^A-Za-z0-9 ._-]")


def _stale_warnings(crls: list[x509.CertificateRevocationList]) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    warnings = []
    for crl in crls:
        next_update = crl.next_update_utc
        if next_update is not None and next_update < now:
            warnings.append(
                f"CRL of {crl.issuer.rfc4514_string()} expired at {next_update.isoformat()}; run `pki crl`"
            )
    return warnings


def _file_stem(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else "ca"
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER), usedforsecurity=False)
    return f"{_UNSAFE.sub('_', common_name)} [{thumbprint.hexdigest().upper()}]"


def _prepare_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise RequestRefused("export_target_not_directory", f"{path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)


def export_pem_bundle(cadir: CaDirectory, out: Path) -> list[str]:
    issuing_crl, root_crl = cadir.current_crls()
    _prepare_dir(out)
    issuing_crl_pem = issuing_crl.public_bytes(serialization.Encoding.PEM)
    root_crl_pem = root_crl.public_bytes(serialization.Encoding.PEM)
    files = {
        "ca-chain.pem": cadir.chain_pem(),
        "root-ca.pem": cert_pem(cadir.root_cert),
        "issuing-ca.pem": cert_pem(cadir.issuing_cert),
        "crl.pem": issuing_crl_pem + root_crl_pem,
        "issuing-ca.crl.pem": issuing_crl_pem,
        "root-ca.crl.pem": root_crl_pem,
    }
    for name, data in files.items():
        write_file_atomic(out / name, data, 0o644)
    return _stale_warnings([issuing_crl, root_crl])


def export_opcua_trustlist(cadir: CaDirectory, out: Path) -> list[str]:
    issuing_crl, root_crl = cadir.current_crls()
    _prepare_dir(out)
    layout = (
        ("trusted", cadir.issuing_cert, issuing_crl),
        ("issuer", cadir.root_cert, root_crl),
    )
    for folder, cert, crl in layout:
        certs_dir, crl_dir = out / folder / "certs", out / folder / "crl"
        certs_dir.mkdir(parents=True, exist_ok=True)
        crl_dir.mkdir(parents=True, exist_ok=True)
        stem = _file_stem(cert)
        write_file_atomic(certs_dir / f"{stem}.der", cert.public_bytes(serialization.Encoding.DER), 0o644)
        write_file_atomic(crl_dir / f"{stem}.crl", crl.public_bytes(serialization.Encoding.DER), 0o644)
    return _stale_warnings([issuing_crl, root_crl])


def export(cadir: CaDirectory, fmt: str, out: Path) -> list[str]:
    """Write the export and audit it; returns warnings (stale CRLs)."""
    try:
        if fmt == "pem-bundle":
            warnings = export_pem_bundle(cadir, out)
        elif fmt == "opcua-trustlist":
            warnings = export_opcua_trustlist(cadir, out)
        else:
            raise RequestRefused(
                "export_format_unknown", f"format must be one of: {', '.join(EXPORT_FORMATS)}"
            )
    except OSError as exc:
        error = RequestRefused("export_write_failed", f"cannot write {out}: {exc.strerror or exc}")
        cadir.audit_refused("pki.export", f"{fmt} {out}", error)
        raise error from None
    except RequestRefused as exc:
        cadir.audit_refused("pki.export", f"{fmt} {out}", exc)
        raise
    cadir.audit_ok("pki.export", f"{fmt} {out}", "; ".join(warnings))
    return warnings
