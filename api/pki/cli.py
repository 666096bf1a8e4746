"""``zonewarden pki ...``: the device PKI on the command line.

Contract (other tools rely on it; extend, never rename)::

    zonewarden pki init    --dir DIR --passphrase-file FILE [--key rsa-3072|rsa-4096|ecdsa-p256|ecdsa-p384]
                           [--name NAME] [--org ORG] [--allow-ip CIDR]... [--allow-dns-suffix SUFFIX]...
                           [--max-days N]
    zonewarden pki issue   --dir DIR --passphrase-file FILE --profile PROFILE --csr CSR.pem --out CERT.pem
                           [--days N] [--role ROLE]
    zonewarden pki issue   --dir DIR --passphrase-file FILE --profile PROFILE --generate-key
                           --subject "CN=...,O=..." [--san dns:NAME|ip:ADDR|uri:URI]... [--key-type KIND]
                           --p12-out FILE.p12 --p12-passphrase-file FILE --out CERT.pem
                           [--days N] [--role ROLE]
    zonewarden pki renew   --dir DIR --passphrase-file FILE --serial HEX --out CERT.pem
                           (--csr CSR.pem | --same-key | --generate-key --p12-out F --p12-passphrase-file F)
                           [--days N] [--revoke-old]
    zonewarden pki revoke  --dir DIR --passphrase-file FILE --serial HEX [--reason REASON]
    zonewarden pki crl     --dir DIR --passphrase-file FILE --out CRL.pem
    zonewarden pki export  --dir DIR --format pem-bundle|opcua-trustlist --out PATH
    zonewarden pki list    --dir DIR [--json] [--observed [--db PATH]]

``issue`` and ``renew`` print the new serial (hex) alone on stdout. Without ``--passphrase-file`` the
passphrase is prompted for on the terminal; it is never read from an environment variable.

Exit codes: 0 done; 2 refused or invalid (bad CSR, bad option, unreadable file); 3 not found (unknown
serial); 4 conflict (already revoked, directory not empty); 5 the CA cannot be unlocked or read (wrong
passphrase, unsafe permissions); 70 an internal error. Every refusal is one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import logging
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.pki.errors import CaUnavailable, Conflict, NotFound, PkiError
from api.pki.names import (
    CA_KEY_KINDS,
    DEFAULT_MAX_VALIDITY_DAYS,
    DEVICE_KEY_KINDS,
    EXPORT_FORMATS,
    PROFILE_NAMES,
    REASON_NAMES,
)
from sensor.errors import UserError

if TYPE_CHECKING:
    from api.pki.ca import CaDirectory
    from api.pki.csr import IPNetwork

# The commands import the CA, CSR, CRL and export modules (and with them ``cryptography``) when they
# run: ``register`` is called by every ``zonewarden`` command but replay and sniff, and stays cheap.

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_CA_UNAVAILABLE, EXIT_INTERNAL = 0, 2, 3, 4, 5, 70
MAX_PASSPHRASE_FILE_BYTES = 4096
OBSERVED_NOTE = (
    "no observations store at {path}: run `zonewarden replay|sniff --db {path} --pki-dir DIR` first; "
    "showing issued certificates only"
)


def _err(message: str) -> None:
    print(f"zonewarden: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"zonewarden: warning: {message}", file=sys.stderr)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def read_passphrase(path: str | None, *, confirm: bool = False, what: str = "CA passphrase") -> bytes:
    """From a file (one trailing newline dropped) or, when no file is given, a terminal prompt."""
    if path is None:
        if not sys.stdin.isatty():
            raise UserError(f"no {what}: give a passphrase file (a prompt needs a terminal)")
        first = getpass.getpass(f"{what}: ").encode("utf-8")
        if confirm and getpass.getpass(f"{what} again: ").encode("utf-8") != first:
            raise UserError(f"the two {what}s differ")
        if not first:
            raise UserError(f"empty {what}")
        return first
    file = Path(path)
    try:
        info = file.stat()
        if info.st_size > MAX_PASSPHRASE_FILE_BYTES:
            raise UserError(
                f"{path}: a passphrase file over {MAX_PASSPHRASE_FILE_BYTES} bytes is not plausible"
            )
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    if info.st_mode & 0o077:
        _warn(f"{path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o})")
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise UserError(f"{what} file {path} is empty")
    return data


def _read_input(path: str, what: str, limit: int = 1 << 20) -> bytes:
    try:
        with open(path, "rb") as handle:
            # Read one byte past the cap so the CSR check can still say "too large" with the real reason.
            return handle.read(limit + 1)
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _write_output(path: str, data: bytes, mode: int) -> None:
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from api.pki.ca import write_file_atomic

    try:
        write_file_atomic(Path(path).resolve(), data, mode)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def _open(args: argparse.Namespace) -> CaDirectory:
    from api.pki.ca import CaDirectory

    return CaDirectory(Path(args.dir), _actor())


# --- commands ---------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from api.pki.ca import init_ca

    passphrase = read_passphrase(args.passphrase_file, confirm=True)
    networks: list[IPNetwork] | None = None
    if args.allow_ip:
        try:
            networks = [ipaddress.ip_network(n, strict=False) for n in args.allow_ip]
        except ValueError as exc:
            raise UserError(f"--allow-ip: {exc}") from None
    cadir = init_ca(
        Path(args.dir),
        passphrase,
        _actor(),
        key_kind=args.key,
        name=args.name,
        organization=args.org,
        ip_networks=networks,
        dns_suffixes=args.allow_dns_suffix or (),
        max_validity_days=args.max_days,
    )
    with cadir:
        print(
            f"initialised {args.dir}: root CA {cadir.root_cert.serial_number:x}, "
            f"issuing CA {cadir.issuing_cert.serial_number:x} ({args.key})",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_issue(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from api.pki.ca import iso, pkcs12_bytes
    from api.pki.csr import parse_san_option, parse_subject_option

    if args.generate_key == bool(args.csr):
        raise UserError("give either --csr FILE or --generate-key")
    if args.generate_key and not (args.subject and args.p12_out and args.p12_passphrase_file):
        raise UserError("--generate-key needs --subject, --p12-out and --p12-passphrase-file")
    p12_passphrase = (
        read_passphrase(args.p12_passphrase_file, what="PKCS#12 passphrase") if args.generate_key else b""
    )
    csr = _read_input(args.csr, "CSR") if args.csr else b""
    passphrase = read_passphrase(args.passphrase_file)
    with _open(args) as cadir:
        ca = cadir.unlock(passphrase)
        if args.generate_key:
            subject = parse_subject_option(args.subject)
            sans = [parse_san_option(s) for s in args.san or ()]
            issued = ca.issue_generated(
                subject, sans, args.profile, key_kind=args.key_type, days=args.days, role=args.role
            )
            p12 = pkcs12_bytes(issued, cadir.chain(), p12_passphrase, subject.rfc4514_string())
            _write_output(args.p12_out, p12, 0o600)
        else:
            issued = ca.issue_csr(csr, args.profile, days=args.days, role=args.role)
        _write_output(args.out, issued.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    print(issued.serial)
    print(
        f"issued {issued.serial} ({args.profile}) for {issued.certificate.subject.rfc4514_string()} "
        f"until {iso(issued.certificate.not_valid_after_utc)}",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_renew(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from api.pki.ca import pkcs12_bytes

    choices = sum((bool(args.csr), args.same_key, args.generate_key))
    if choices != 1:
        raise UserError("renew needs exactly one of --csr FILE, --same-key, --generate-key")
    if args.generate_key and not (args.p12_out and args.p12_passphrase_file):
        raise UserError("--generate-key needs --p12-out and --p12-passphrase-file")
    p12_passphrase = (
        read_passphrase(args.p12_passphrase_file, what="PKCS#12 passphrase") if args.generate_key else b""
    )
    csr = _read_input(args.csr, "CSR") if args.csr else None
    from api.pki.crl import parse_serial

    serial = parse_serial(args.serial)
    passphrase = read_passphrase(args.passphrase_file)
    with _open(args) as cadir:
        ca = cadir.unlock(passphrase)
        issued = ca.renew(
            serial,
            csr=csr,
            same_key=args.same_key,
            generate_key_kind=args.key_type if args.generate_key else None,
            days=args.days,
            revoke_old=args.revoke_old,
        )
        if issued.private_key is not None:
            name = issued.certificate.subject.rfc4514_string()
            _write_output(args.p12_out, pkcs12_bytes(issued, cadir.chain(), p12_passphrase, name), 0o600)
        _write_output(args.out, issued.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    print(issued.serial)
    print(f"renewed {args.serial} as {issued.serial}", file=sys.stderr)
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    passphrase = read_passphrase(args.passphrase_file)
    with _open(args) as cadir:
        revocation = cadir.unlock(passphrase).revoke(args.serial, args.reason)
    print(
        f"revoked {revocation.serial} ({revocation.reason}); CRL number {revocation.crl_number} written to "
        f"{Path(args.dir) / 'issuing-ca.crl.pem'}",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_crl(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization

    from api.pki.ca import iso

    passphrase = read_passphrase(args.passphrase_file)
    with _open(args) as cadir:
        crl = cadir.unlock(passphrase).refresh_crls()
    _write_output(args.out, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    next_update = crl.next_update_utc
    print(
        f"CRL written to {args.out}, next update {iso(next_update) if next_update else 'none'}",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from api.pki.export import export

    with _open(args) as cadir:
        warnings = export(cadir, args.format, Path(args.out))
    for warning in warnings:
        _warn(warning)
    print(f"{args.format} written to {args.out}", file=sys.stderr)
    return EXIT_OK


def _observed_certificates(db: Path, issued: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Certificates seen on the wire, one per (certificate, presenting IP), from the sensor store
    (:func:`api.pki.observed.observed_certificates`, which the web API serves too)."""
    from api.pki.observed import observed_certificates
    from sensor.store.sqlite import Store

    store = Store(db, readonly=True)
    try:
        assets = store.load_assets()
    finally:
        store.close()
    return observed_certificates(assets, issued)


def cmd_list(args: argparse.Namespace) -> int:
    from api.pki.ca import iso, utc_now

    with _open(args) as cadir:
        rows = cadir.list_certificates()
    now = iso(utc_now())
    items = [row.as_dict(now) for row in rows]
    observed: list[dict[str, Any]] | None = None
    note = ""
    if args.observed:
        from sensor.store.sqlite import default_db_path

        db = Path(args.db) if args.db else default_db_path()
        if db.is_file():
            from api.pki.observed import issued_index

            observed = _observed_certificates(db, issued_index(items))
        else:
            note = OBSERVED_NOTE.format(path=db)
            _warn(note)
    if args.json:
        doc: dict[str, object] = {"generated_at": now, "certificates": items}
        if args.observed:
            doc["observed"] = observed
            if note:
                doc["observed_note"] = note
        sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    header = f"{'SERIAL':<40} {'STATUS':<8} {'PROFILE':<16} {'NOT AFTER':<25} SUBJECT / SANS"
    print(header)
    for item in items:
        sans = ", ".join(item["sans"])
        print(
            f"{item['serial']:<40} {item['status']:<8} {item['profile']:<16} {item['not_after']:<25} "
            f"{item['subject']}{'  [' + sans + ']' if sans else ''}"
        )
    if observed is not None:
        print(f"\nOBSERVED ON THE WIRE ({len(observed)})")
        print(f"{'STATUS':<19} {'IP':<16} {'ROLE':<13} {'SOURCE':<20} {'LAST SEEN':<25} SUBJECT (SERIAL)")
        for seen in observed:
            print(
                f"{seen['status']:<19} {seen['ip']:<16} {','.join(seen['roles']):<13} "
                f"{','.join(seen['sources']):<20} {seen['last_seen'] or '-':<25} "
                f"{seen['subject']} ({seen['serial'] or '?'})"
            )
    return EXIT_OK


# --- wiring -----------------------------------------------------------------------------------------


def _exit_code(exc: PkiError) -> int:
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, Conflict):
        return EXIT_CONFLICT
    if isinstance(exc, CaUnavailable):
        return EXIT_CA_UNAVAILABLE
    return EXIT_REFUSED


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn every failure into one line on stderr and an exit code; never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except PkiError as exc:
            _err(str(exc))
            return _exit_code(exc)
        except UserError as exc:
            _err(str(exc))
            return EXIT_REFUSED
        except OSError as exc:
            _err(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
            return EXIT_REFUSED
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # the CLI promises one line, whatever went wrong
            logger.debug("internal error", exc_info=True)
            _err(f"internal error: {type(exc).__name__}: {exc}")
            return EXIT_INTERNAL

    run.__name__ = command.__name__
    return run


def _positive_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if value < 1:
        raise argparse.ArgumentTypeError("days must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``pki`` and its sub-commands to the ``zonewarden`` parser."""
    pki = subparsers.add_parser("pki", help="device PKI: CA, issuance, revocation, CRLs, trust lists")
    sub = pki.add_subparsers(dest="pki_command", required=True, metavar="COMMAND")

    def common(parser: argparse.ArgumentParser, unlock: bool) -> None:
        parser.add_argument("--dir", required=True, help="PKI directory (mode 0700)")
        if unlock:
            parser.add_argument(
                "--passphrase-file",
                metavar="FILE",
                help="file holding the CA key passphrase (prompted for on a terminal when absent)",
            )

    p = sub.add_parser("init", help="create a root CA and an issuing CA (pathlen 0)")
    common(p, unlock=True)
    p.add_argument("--key", choices=CA_KEY_KINDS, default="rsa-3072", help="CA key type (default rsa-3072)")
    p.add_argument("--name", default="zonewarden", help="CA name prefix (CN '<name> Root CA')")
    p.add_argument("--org", help="organisation (subject O) of both CAs")
    p.add_argument(
        "--allow-ip",
        action="append",
        metavar="CIDR",
        help="network allowed in IP SANs (repeat; default private ranges)",
    )
    p.add_argument(
        "--allow-dns-suffix", action="append", metavar="SUFFIX", help="domain allowed in DNS SANs (repeat)"
    )
    p.add_argument("--max-days", type=_positive_days, default=DEFAULT_MAX_VALIDITY_DAYS, help="validity cap")
    p.set_defaults(func=_guarded(cmd_init))

    def issuance_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", required=True, metavar="CERT.pem", help="where to write the certificate")
        parser.add_argument("--csr", metavar="CSR.pem", help="PKCS#10 request (PEM or DER)")
        parser.add_argument("--generate-key", action="store_true", help="generate the key here (PKCS#12 out)")
        parser.add_argument(
            "--key-type", choices=DEVICE_KEY_KINDS, default="rsa-3072", help="generated key type"
        )
        parser.add_argument(
            "--p12-out", metavar="FILE", help="PKCS#12 file for the generated key (mode 0600)"
        )
        parser.add_argument("--p12-passphrase-file", metavar="FILE", help="passphrase protecting the PKCS#12")
        parser.add_argument("--days", type=_positive_days, help="validity in days (default: the profile's)")

    p = sub.add_parser("issue", help="issue a certificate from a CSR or with a generated key")
    common(p, unlock=True)
    p.add_argument("--profile", required=True, choices=list(PROFILE_NAMES))
    issuance_options(p)
    p.add_argument("--subject", help='subject for --generate-key, RFC 4514 ("CN=plc1,O=Plant")')
    p.add_argument(
        "--san", action="append", metavar="TYPE:VALUE", help="dns:NAME, ip:ADDRESS or uri:URI (repeat)"
    )
    p.add_argument("--role", help="Modbus/TCP Security role (profile modbus-security)")
    p.set_defaults(func=_guarded(cmd_issue))

    p = sub.add_parser("renew", help="new certificate, same subject/SANs/profile; new or same key")
    common(p, unlock=True)
    p.add_argument("--serial", required=True, metavar="HEX")
    issuance_options(p)
    p.add_argument("--same-key", action="store_true", help="keep the current public key")
    p.add_argument("--revoke-old", action="store_true", help="revoke the old certificate (reason superseded)")
    p.set_defaults(func=_guarded(cmd_renew))

    p = sub.add_parser("revoke", help="revoke a certificate and publish new CRLs")
    common(p, unlock=True)
    p.add_argument("--serial", required=True, metavar="HEX")
    p.add_argument("--reason", default="unspecified", help=f"RFC 5280 reason: {', '.join(REASON_NAMES)}")
    p.set_defaults(func=_guarded(cmd_revoke))

    p = sub.add_parser("crl", help="sign fresh CRLs (numbers incremented); write the issuing CA's")
    common(p, unlock=True)
    p.add_argument("--out", required=True, metavar="CRL.pem")
    p.set_defaults(func=_guarded(cmd_crl))

    p = sub.add_parser("export", help="trust material: PEM bundle (mosquitto) or OPC UA trust list folders")
    common(p, unlock=False)
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--out", required=True, metavar="PATH", help="output directory")
    p.set_defaults(func=_guarded(cmd_export))

    p = sub.add_parser("list", help="issued certificates and their status")
    common(p, unlock=False)
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.add_argument(
        "--observed",
        action="store_true",
        help="also certificates seen on the wire, with their status (from the sensor store)",
    )
    p.add_argument(
        "--db", metavar="PATH", help="with --observed: the sensor store (default: zonewarden's data dir)"
    )
    p.set_defaults(func=_guarded(cmd_list))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m api.pki.cli pki ...``) until sensor/cli.py hooks ``register`` in."""
    parser = argparse.ArgumentParser(prog="zonewarden")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="zonewarden: %(levelname)s: %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
