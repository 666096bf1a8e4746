"""``/api/v1/audit``: read the hash-chained audit log and verify it (``api.audit``)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import Query

from api.audit import AuditLog, AuditRecord
from api.auth import Permission
from api.deps import AppSettings, Db
from api.errors import ApiError
from api.pki.ca import DATABASE
from api.routes.common import guarded, resource_router
from api.schemas.audit import AuditEntry, AuditProblemOut, AuditQuery, AuditVerification
from api.schemas.common import Page
from api.settings import Settings

router = resource_router("audit", "/audit")


@contextlib.contextmanager
def _log_connection(source: str, db: sqlite3.Connection, settings: Settings) -> Iterator[sqlite3.Connection]:
    if source == "api":
        yield db
        return
    if settings.pki_dir is None or not (settings.pki_dir / DATABASE).is_file():
        raise ApiError(503, "pki_not_configured", "this server has no PKI directory")
    conn = sqlite3.connect(f"file:{settings.pki_dir / DATABASE}?mode=ro", uri=True, timeout=10.0)
    try:
        yield conn
    finally:
        conn.close()


@router.get(
    "",
    summary="audit records, oldest first",
    response_model=Page[AuditEntry],
    **guarded(Permission.AUDIT_READ, 503),
)
def list_audit(db: Db, settings: AppSettings, params: Annotated[AuditQuery, Query()]) -> Page[AuditEntry]:
    where, args = [], []
    # instr(): literal substring match, no LIKE wildcards and no patterns (HOSTILE_INPUTS A9).
    if params.who:
        where.append("instr(who, ?) > 0")
        args.append(params.who)
    if params.what:
        where.append("instr(what, ?) > 0")
        args.append(params.what)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with _log_connection(params.source, db, settings) as conn:
        total = int(conn.execute(f"SELECT COUNT(*) FROM audit_log{clause}", args).fetchone()[0])
        rows = conn.execute(
            f"SELECT seq, ts, who, what, object, result, prev_hash, hash FROM audit_log{clause}"
            " ORDER BY seq LIMIT ? OFFSET ?",
            [*args, params.limit, params.offset],
        ).fetchall()
    items = [_entry(row) for row in rows]
    return Page(items=items, total=total, limit=params.limit, offset=params.offset)


def _entry(row: tuple[object, ...]) -> AuditEntry:
    rec = AuditRecord(*row)  # type: ignore[arg-type]
    return AuditEntry(
        seq=rec.seq,
        ts=rec.ts,
        who=rec.who,
        what=rec.what,
        object=rec.object,
        result=rec.result,
        prev_hash=rec.prev_hash,
        hash=rec.hash,
    )


@router.get(
    "/verify",
    summary="walk the hash chain and report tampering",
    response_model=AuditVerification,
    **guarded(Permission.AUDIT_READ, 503),
)
def verify_audit(
    db: Db,
    settings: AppSettings,
    source: Annotated[Literal["api", "pki"], Query(description="which log")] = "api",
) -> AuditVerification:
    with _log_connection(source, db, settings) as conn:
        log = AuditLog.__new__(AuditLog)  # read-only: do not run the schema script on a read-only file
        log.conn = conn
        problems = log.verify()
        seq, digest = log.head()
        count = int(conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])
    return AuditVerification(
        source=source,
        intact=not problems,
        records=count,
        head_seq=seq,
        head_hash=digest,
        problems=[AuditProblemOut(seq=p.seq, kind=p.kind, detail=p.detail) for p in problems],
    )
