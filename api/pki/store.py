"""The PKI's durable state in SQLite: issued certificates, CRL numbers, and the audit log.

WAL journal with ``synchronous=FULL``: a certificate the CA has handed out, or a revocation it has
confirmed, must survive a power cut (DESIGN §6). Serial numbers are unique per issuer by a UNIQUE
constraint, not by hope. Serials are stored as lower-case hex without leading zeros (the same form as
``sensor.records.CertificateInfo.serial_hex``) so the wire side can match them as text.

The SQL is portable (TEXT/INTEGER/BLOB, no SQLite-only syntax in the tables) so the schema can move to
PostgreSQL for a central deployment.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.audit import AuditLog

SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    id                INTEGER PRIMARY KEY,
    issuer            TEXT NOT NULL,
    serial            TEXT NOT NULL,
    profile           TEXT NOT NULL,
    subject           TEXT NOT NULL,
    sans              TEXT NOT NULL,
    key_type          TEXT NOT NULL,
    not_before        TEXT NOT NULL,
    not_after         TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('valid', 'revoked')),
    revoked_at        TEXT,
    revocation_reason TEXT,
    key_generated     INTEGER NOT NULL DEFAULT 0,
    renewal_of        INTEGER REFERENCES certificates (id),
    sha256            TEXT NOT NULL UNIQUE,
    der               BLOB NOT NULL,
    created_at        TEXT NOT NULL,
    UNIQUE (issuer, serial)
);
CREATE TABLE IF NOT EXISTS crl_state (
    issuer      TEXT PRIMARY KEY,
    crl_number  INTEGER NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class CertificateRow:
    """One issued certificate as the store keeps it."""

    id: int
    issuer: str
    serial: str
    profile: str
    subject: str
    sans: tuple[str, ...]
    key_type: str
    not_before: str
    not_after: str
    status: str
    revoked_at: str | None
    revocation_reason: str | None
    key_generated: bool
    renewal_of: int | None
    sha256: str
    der: bytes
    created_at: str

    def as_dict(self, now_iso: str | None = None) -> dict[str, Any]:
        status = self.status
        if status == "valid" and now_iso is not None and self.not_after < now_iso:
            status = "expired"
        return {
            "serial": self.serial,
            "status": status,
            "profile": self.profile,
            "subject": self.subject,
            "sans": list(self.sans),
            "key_type": self.key_type,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "revoked_at": self.revoked_at,
            "revocation_reason": self.revocation_reason,
            "key_generated": self.key_generated,
            "renewal_of": self.renewal_of,
            "issuer": self.issuer,
            "sha256": self.sha256,
        }


_COLUMNS = (
    "id, issuer, serial, profile, subject, sans, key_type, not_before, not_after, status, revoked_at,"
    " revocation_reason, key_generated, renewal_of, sha256, der, created_at"
)


def _row(values: tuple[Any, ...]) -> CertificateRow:
    fields = list(values)
    fields[5] = tuple(json.loads(fields[5]))
    fields[12] = bool(fields[12])
    fields[15] = bytes(fields[15])
    return CertificateRow(*fields)


def serial_hex(serial: int) -> str:
    return format(serial, "x")


class PkiStore:
    """SQLite file of one PKI directory; one connection, explicit transactions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            # Create the file 0600 before SQLite does: its -wal and -shm files copy this mode.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self.audit = AuditLog(self.conn)

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # --- certificates -------------------------------------------------------------------------------

    def insert(
        self,
        *,
        issuer: str,
        serial: int,
        profile: str,
        subject: str,
        sans: list[str],
        key_type: str,
        not_before: str,
        not_after: str,
        sha256: str,
        der: bytes,
        created_at: str,
        key_generated: bool = False,
        renewal_of: int | None = None,
    ) -> int:
        """Insert one certificate; sqlite3.IntegrityError if (issuer, serial) is already taken."""
        cursor = self.conn.execute(
            "INSERT INTO certificates (issuer, serial, profile, subject, sans, key_type, not_before,"
            " not_after, status, key_generated, renewal_of, sha256, der, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'valid', ?, ?, ?, ?, ?)",
            (
                issuer,
                serial_hex(serial),
                profile,
                subject,
                json.dumps(sans),
                key_type,
                not_before,
                not_after,
                int(key_generated),
                renewal_of,
                sha256,
                der,
                created_at,
            ),
        )
        return int(cursor.lastrowid or 0)

    def serial_taken(self, issuer: str, serial: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM certificates WHERE issuer = ? AND serial = ?", (issuer, serial_hex(serial))
        ).fetchone()
        return row is not None

    def get(self, issuer: str, serial: int) -> CertificateRow | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM certificates WHERE issuer = ? AND serial = ?",
            (issuer, serial_hex(serial)),
        ).fetchone()
        return _row(row) if row else None

    def all(self) -> list[CertificateRow]:
        return [_row(r) for r in self.conn.execute(f"SELECT {_COLUMNS} FROM certificates ORDER BY id")]

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM certificates").fetchone()[0])

    def revoked(self, issuer: str) -> list[CertificateRow]:
        return [
            _row(r)
            for r in self.conn.execute(
                f"SELECT {_COLUMNS} FROM certificates WHERE issuer = ? AND status = 'revoked' ORDER BY id",
                (issuer,),
            )
        ]

    def mark_revoked(self, row_id: int, revoked_at: str, reason: str) -> None:
        self.conn.execute(
            "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?"
            " WHERE id = ? AND status = 'valid'",
            (revoked_at, reason, row_id),
        )

    # --- CRL numbers --------------------------------------------------------------------------------

    def next_crl_number(self, issuer: str, this_update: str, next_update: str) -> int:
        """Increment and return the CRL number of ``issuer`` (RFC 5280 §5.2.3: monotonically increasing)."""
        row = self.conn.execute("SELECT crl_number FROM crl_state WHERE issuer = ?", (issuer,)).fetchone()
        number = (int(row[0]) if row else 0) + 1
        self.conn.execute(
            "INSERT INTO crl_state (issuer, crl_number, this_update, next_update) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (issuer) DO UPDATE SET crl_number = excluded.crl_number,"
            " this_update = excluded.this_update, next_update = excluded.next_update",
            (issuer, number, this_update, next_update),
        )
        return number

    def crl_state(self, issuer: str) -> tuple[int, str, str] | None:
        row = self.conn.execute(
            "SELECT crl_number, this_update, next_update FROM crl_state WHERE issuer = ?", (issuer,)
        ).fetchone()
        return (int(row[0]), str(row[1]), str(row[2])) if row else None
