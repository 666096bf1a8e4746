"""Bearer tokens, roles and the role matrix that decides every route.

A token is ``zw_<id>_<secret>``: ``id`` is 12 hex digits naming the row, ``secret`` 32 random bytes
(``secrets.token_urlsafe``). Only SHA-256 of the secret is stored; the whole token is shown once, when it
is made. A slow password hash is not needed: the secret has 256 bits of entropy, so nobody can search
for it offline. Verification looks the row up by id and compares digests with
``hmac.compare_digest`` (constant time); an unknown id is compared against a dummy digest so timing does
not tell whether an id exists (HOSTILE_INPUTS A2).

Roles (who may do what) — the matrix below is the single source; every route names one permission:

+------------------+--------+---------+-------+-----------+---------+
| permission       | viewer | analyst | admin | pki-admin | auditor |
+==================+========+=========+=======+===========+=========+
| read             |   x    |    x    |   x   |     x     |    x    |
| alerts:write     |        |    x    |   x   |           |         |
| detection:tune   |        |    x    |   x   |           |         |
| assets:write     |        |    x    |   x   |           |         |
| policy:write     |        |         |   x   |           |         |
| pki:write        |        |         |       |     x     |         |
| audit:read       |        |         |   x   |           |    x    |
| tokens:manage    |        |         |   x   |           |         |
+------------------+--------+---------+-------+-----------+---------+

``read``: status, inventory, graph, communications, alerts, policy, baseline, rules, CA certificates and
CRLs. ``detection:tune``: accept an alert into the baseline, reset it. ``assets:write``: name and
tag assets (which can move them between policy zones). ``policy:write``: replace or learn
the zone/conduit policy, enable/disable/update rules (what the appliance judges traffic against).
Issuing and revoking certificates is kept away from ``admin`` (separation of duties: a compromised
admin token cannot mint device identities).

Failed authentication (a token presented but wrong) is counted per client address: after
``auth_failures_allowed`` failures in ``auth_failure_window_seconds`` every request from that address
gets 429 with ``Retry-After`` until the window has passed (A10). Each failure and each lock-out is
audited; requests refused while locked out are not (the audit log must not be a flood target).
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.audit import AuditLog
from api.deps import get_db
from api.errors import ApiError
from api.roles import Role


class Permission(StrEnum):
    READ = "read"
    ALERTS_WRITE = "alerts:write"
    DETECTION_TUNE = "detection:tune"
    ASSETS_WRITE = "assets:write"  # names and tags people give assets
    POLICY_WRITE = "policy:write"
    PKI_WRITE = "pki:write"
    AUDIT_READ = "audit:read"
    TOKENS_MANAGE = "tokens:manage"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.ANALYST: frozenset(
        {Permission.READ, Permission.ALERTS_WRITE, Permission.DETECTION_TUNE, Permission.ASSETS_WRITE}
    ),
    Role.ADMIN: frozenset(
        {
            Permission.READ,
            Permission.ALERTS_WRITE,
            Permission.DETECTION_TUNE,
            Permission.ASSETS_WRITE,
            Permission.POLICY_WRITE,
            Permission.AUDIT_READ,
            Permission.TOKENS_MANAGE,
        }
    ),
    Role.PKI_ADMIN: frozenset({Permission.READ, Permission.PKI_WRITE}),
    Role.AUDITOR: frozenset({Permission.READ, Permission.AUDIT_READ}),
}

TOKEN_PREFIX = "zw"
_TOKEN_SHAPE = re.compile(r"zw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
MAX_TOKEN_NAME = 100
_DUMMY_DIGEST = hashlib.sha256(b"zonewarden: no such token").hexdigest()

TOKEN_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    TEXT
);
"""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as stored (no secret, no hash leaves this module)."""

    id: str
    name: str
    role: Role
    created_at: str
    created_by: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's id, name and role."""

    token_id: str
    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"token:{self.token_id}:{self.role}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class TokenStore:
    """The ``api_tokens`` table on an open connection (autocommit; one statement per change)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @staticmethod
    def create_schema(conn: sqlite3.Connection) -> None:
        conn.executescript(TOKEN_SCHEMA)

    def create(self, role: Role, name: str, created_by: str) -> tuple[TokenRecord, str]:
        """Make a token; returns its record and the plaintext, which is never stored nor shown again."""
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(token_id, name[:MAX_TOKEN_NAME], Role(role), _now(), created_by, None)
        self.conn.execute(
            "INSERT INTO api_tokens (id, name, role, secret_sha256, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (record.id, record.name, str(record.role), _digest(secret), record.created_at, created_by),
        )
        return record, f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def verify(self, token: str) -> TokenRecord | None:
        """The token's record if the token is valid and not revoked; constant-time on the secret."""
        match = _TOKEN_SHAPE.fullmatch(token)
        token_id, secret = (match.group(1), match.group(2)) if match else ("", "x")
        row = self.conn.execute(
            "SELECT id, name, role, secret_sha256, created_at, created_by, revoked_at FROM api_tokens"
            " WHERE id = ?",
            (token_id,),
        ).fetchone()
        stored = str(row[3]) if row else _DUMMY_DIGEST
        same = hmac.compare_digest(_digest(secret), stored)
        if not (match and row and same) or row[6] is not None:
            return None
        try:
            role = Role(row[2])
        except ValueError:
            return None
        return TokenRecord(str(row[0]), str(row[1]), role, str(row[4]), str(row[5]), None)

    def get(self, token_id: str) -> TokenRecord | None:
        row = self.conn.execute(
            "SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens WHERE id = ?",
            (token_id,),
        ).fetchone()
        return _record(row) if row else None

    def list(self, limit: int, offset: int) -> tuple[list[TokenRecord], int]:
        total = int(self.conn.execute("SELECT COUNT(*) FROM api_tokens").fetchone()[0])
        rows = self.conn.execute(
            "SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens"
            " ORDER BY created_at, id LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return [_record(r) for r in rows], total

    def revoke(self, token_id: str) -> bool:
        """Mark a token revoked; False when there is no such token (or it was revoked already)."""
        cursor = self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (_now(), token_id)
        )
        return cursor.rowcount == 1


def _record(row: tuple[object, ...]) -> TokenRecord:
    revoked = row[5]
    return TokenRecord(
        str(row[0]),
        str(row[1]),
        Role(str(row[2])),
        str(row[3]),
        str(row[4]),
        None if revoked is None else str(revoked),
    )


class FailedAuthLimiter:
    """Sliding-window count of failed authentications per client address (thread-safe, bounded)."""

    def __init__(
        self,
        allowed: int,
        window: float,
        max_clients: int,
        clock: collections.abc.Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> collections.deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        with self._lock:
            now = self.clock()
            times = self._recent(client, now)
            if times is None or len(times) < self.allowed:
                return None
            # Locked until the failure that made it reach the limit leaves the window.
            return max(1, math.ceil(times[-self.allowed] + self.window - now))

    def record_failure(self, client: str) -> bool:
        """Count one failure; True when this failure is the one that locks the client out."""
        with self._lock:
            now = self.clock()
            times = self._recent(client, now)
            if times is None:
                times = collections.deque(maxlen=max(1, self.allowed))
                self._failures[client] = times
                while len(self._failures) > self.max_clients:
                    self._failures.popitem(last=False)
            else:
                self._failures.move_to_end(client)
            times.append(now)
            return len(times) >= self.allowed


def limiter_for(request: Request) -> FailedAuthLimiter:
    limiter: FailedAuthLimiter = request.app.state.auth_limiter
    return limiter


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description="An API token (`zw_<id>_<secret>`) from `zonewarden tokens create --role ROLE` or "
    "POST /api/v1/tokens. Roles: viewer, analyst, admin, pki-admin, auditor.",
)

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Require:
    """Dependency: a valid token whose role holds ``permission``; returns the :class:`Principal`.

    401 without a token or with a wrong one, 403 with the wrong role, 429 while the client is locked out.
    """

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __call__(
        self,
        request: Request,
        conn: Annotated[sqlite3.Connection, Depends(get_db)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        client = client_address(request)
        limiter = limiter_for(request)
        wait = limiter.retry_after(client)
        if wait is not None:
            raise ApiError(
                429,
                "too_many_failed_logins",
                "too many failed authentications; retry later",
                {"Retry-After": str(wait)},
            )
        if credentials is None:
            raise ApiError(401, "unauthenticated", "a bearer token is required", _UNAUTHORIZED)
        record = TokenStore(conn).verify(credentials.credentials)
        if record is None:
            locked = limiter.record_failure(client)
            audit = AuditLog(conn)
            audit.append(
                f"anonymous@{client}", "auth.failed", request.url.path[:200], "refused: invalid token"
            )
            if locked:
                audit.append(
                    f"anonymous@{client}",
                    "auth.locked_out",
                    client,
                    f"refused: {limiter.allowed} failures in {limiter.window:g}s",
                )
            raise ApiError(401, "unauthenticated", "invalid token", _UNAUTHORIZED)
        principal = Principal(record.id, record.name, record.role)
        request.state.principal = principal
        if self.permission not in ROLE_PERMISSIONS[record.role]:
            raise ApiError(403, "forbidden", f"role {record.role} may not do this")
        return principal

    def __repr__(self) -> str:
        return f"Require({self.permission})"


# Annotated shorthands for routes.
Reader = Annotated[Principal, Depends(Require(Permission.READ))]
