"""``zonewarden serve`` and ``zonewarden tokens``.

Contract (extend, never rename)::

    zonewarden serve [--db PATH] [--host 127.0.0.1] [--port 8000] [--sniff IFACE [--sniff IFACE ...]
                     [--bpf FILTER]]
                     [--replay PCAP...] [--policy FILE] [--pki-dir DIR [--pki-passphrase-file FILE]]
                     [--baseline FILE] [--learn-for SECONDS] [--follow-eve FILE] [--deep]
                     [--rules-dir DIR [--rules-data-dir DIR]]
                     [--timeout-keep-alive S] [--limit-concurrency N] [--auth-failure-limit N]
                     [--print-admin-token] [--cert-expiry-days N]
    zonewarden tokens create --role viewer|analyst|admin|pki-admin|auditor [--db PATH] [--name NAME]
    zonewarden tokens list [--db PATH]
    zonewarden tokens revoke ID [--db PATH]

``tokens create`` prints the new token alone on stdout (shown once; only its hash is stored).
``serve --print-admin-token`` prints ``URL: ...`` and ``Token: ...`` on stdout once the API listens
(what ``make demo`` shows). Exit codes: 0 done, 1 serving failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from sensor.errors import UserError

MAX_EXPIRY_DAYS = 3650


def _default_db() -> Path:
    from sensor.store.sqlite import default_db_path

    return default_db_path()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def cmd_serve(args: argparse.Namespace) -> int:
    from api.serve import ServeOptions, serve

    if args.sniff and args.replay:
        raise UserError("give either --sniff IFACE or --replay PCAP..., not both")
    if args.pki_passphrase_file and not args.pki_dir:
        raise UserError("--pki-passphrase-file needs --pki-dir")
    options = ServeOptions(
        db=Path(args.db) if args.db else _default_db(),
        host=args.host,
        port=args.port,
        sniff=list(args.sniff or ()),
        bpf=args.bpf,
        replay=[Path(p) for p in args.replay or ()],
        policy=Path(args.policy) if args.policy else None,
        baseline=Path(args.baseline) if args.baseline else None,
        rules_dir=Path(args.rules_dir) if args.rules_dir else None,
        rules_data_dir=Path(args.rules_data_dir) if args.rules_data_dir else None,
        pki_dir=Path(args.pki_dir) if args.pki_dir else None,
        pki_passphrase_file=Path(args.pki_passphrase_file) if args.pki_passphrase_file else None,
        timeout_keep_alive=args.timeout_keep_alive,
        limit_concurrency=args.limit_concurrency,
        print_admin_token=args.print_admin_token,
        auth_failures_allowed=args.auth_failure_limit,
        cert_expiry_days=args.cert_expiry_days,
        learn_for=args.learn_for,
        follow_eve=Path(args.follow_eve) if args.follow_eve else None,
        deep=args.deep,
    )
    return serve(options)


def _open_tokens(db: str | None) -> tuple[object, object]:
    from api.auth import TokenStore
    from api.deps import connect

    path = Path(db) if db else _default_db()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    TokenStore.create_schema(conn)
    return conn, TokenStore(conn)


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from api.audit import AuditLog
    from api.auth import TokenStore
    from api.roles import Role

    _conn, store = _open_tokens(args.db)
    assert isinstance(store, TokenStore)
    try:
        record, token = store.create(Role(args.role), args.name, _actor())
        AuditLog(store.conn).append(
            _actor(), "tokens.create", f"token:{record.id}", f"ok: role={record.role} name={record.name}"
        )
    finally:
        store.conn.close()
    print(token)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from api.auth import TokenStore

    _, store = _open_tokens(args.db)
    assert isinstance(store, TokenStore)
    try:
        records, _total = store.list(1000, 0)
    finally:
        store.conn.close()
    print(f"{'ID':<14} {'ROLE':<10} {'CREATED':<26} {'REVOKED':<26} NAME")
    for r in records:
        print(f"{r.id:<14} {r.role:<10} {r.created_at:<26} {r.revoked_at or '-':<26} {r.name}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from api.audit import AuditLog
    from api.auth import TokenStore

    _, store = _open_tokens(args.db)
    assert isinstance(store, TokenStore)
    try:
        done = store.revoke(args.id)
        AuditLog(store.conn).append(
            _actor(),
            "tokens.revoke",
            f"token:{args.id[:20]}",
            "ok" if done else "refused: no such active token",
        )
    finally:
        store.conn.close()
    if not done:
        raise UserError(f"no active token with id {args.id!r}")
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535")
    return value


def _expiry_days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a whole number of days") from None
    if not 0 <= value <= MAX_EXPIRY_DAYS:
        raise argparse.ArgumentTypeError(f"0..{MAX_EXPIRY_DAYS} days")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``serve`` and ``tokens`` to the ``zonewarden`` parser."""
    from api.roles import Role

    p = subparsers.add_parser("serve", help="run the web API, optionally with a live or replay sensor")
    p.add_argument("--db", metavar="PATH", help="SQLite store (default: $ZONEWARDEN_DATA/zonewarden.db)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--sniff",
        metavar="IFACE",
        action="append",
        help="capture live from this SPAN interface (never transmits); repeat for several (TAP ports)",
    )
    p.add_argument("--bpf", metavar="FILTER", help="BPF capture filter for --sniff")
    p.add_argument("--replay", nargs="+", metavar="PCAP", help="replay these capture files into the store")
    p.add_argument("--policy", metavar="FILE", help="zone/conduit policy (YAML)")
    p.add_argument(
        "--baseline", metavar="FILE", help="anomaly baseline: detect with it (learn it when absent)"
    )
    p.add_argument(
        "--learn-for",
        type=float,
        metavar="SECONDS",
        help="anomaly detection: learn on the first SECONDS of packet time, detect after",
    )
    p.add_argument(
        "--follow-eve", metavar="FILE", help="follow Suricata's EVE file: its alerts join the alert stream"
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="identify other ICS protocols with tshark (beside --sniff, or after --replay)",
    )
    p.add_argument("--rules-dir", metavar="DIR", help="rule management: update.yaml, enable/disable.conf")
    p.add_argument("--rules-data-dir", metavar="DIR", help="where `rules update` builds the active set")
    p.add_argument("--pki-dir", metavar="DIR", help="PKI directory (zonewarden pki init) served under /pki")
    p.add_argument(
        "--cert-expiry-days",
        type=_expiry_days,
        default=30,
        metavar="N",
        help="with --pki-dir: alert when a certificate in use expires within N days (default 30)",
    )
    p.add_argument(
        "--pki-passphrase-file", metavar="FILE", help="unlocks the CA for issuing (else read-only)"
    )
    p.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=5,
        metavar="S",
        help="close idle keep-alive connections after S seconds (default 5)",
    )
    p.add_argument(
        "--limit-concurrency",
        type=int,
        default=200,
        metavar="N",
        help="answer 503 beyond N concurrent connections (default 200)",
    )
    p.add_argument(
        "--auth-failure-limit",
        type=int,
        default=10,
        metavar="N",
        help="wrong tokens per client address per minute before 429 (default 10)",
    )
    p.add_argument(
        "--print-admin-token",
        action="store_true",
        help="make an admin token and print the URL and token once serving",
    )
    p.set_defaults(func=cmd_serve)

    t = subparsers.add_parser("tokens", help="API tokens: create (shown once), list, revoke")
    sub = t.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    c = sub.add_parser("create", help="make a token and print it (only its hash is stored)")
    c.add_argument("--role", required=True, choices=[str(r) for r in Role])
    c.add_argument("--db", metavar="PATH", help="SQLite store (default: $ZONEWARDEN_DATA/zonewarden.db)")
    c.add_argument("--name", default="cli", help="a label for the token")
    c.set_defaults(func=cmd_tokens_create)
    ls = sub.add_parser("list", help="list tokens (never their secrets)")
    ls.add_argument("--db", metavar="PATH")
    ls.set_defaults(func=cmd_tokens_list)
    rv = sub.add_parser("revoke", help="revoke a token by id")
    rv.add_argument("id")
    rv.add_argument("--db", metavar="PATH")
    rv.set_defaults(func=cmd_tokens_revoke)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="zonewarden")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(int(ns.func(ns)))
