"""Request-scoped dependencies: settings, a database connection, pagination.

A connection per request: SQLite connections are cheap to open, must not cross threads, and the sensor
writes to the same file from its own connection (WAL: readers never block the writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from api.settings import Settings

BUSY_TIMEOUT_SECONDS = 10.0


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with durable commits (DESIGN.md §6)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def get_db(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[sqlite3.Connection]:
    conn = connect(settings.db_path)
    try:
        yield conn
    finally:
        conn.close()


Db = Annotated[sqlite3.Connection, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def set_audit(request: Request, what: str, obj: str, detail: str = "") -> None:
    """Name the state change a route makes; the audit middleware records it with the response status."""
    request.state.audit = (what, obj[:512], detail[:512])


def get_principal(request: Request) -> Any:
    """The caller the route's permission guard authenticated (guards run before route parameters)."""
    return request.state.principal


def get_store(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Any]:
    """The sensor store (``sensor.store.sqlite.Store``), read-only, for one request."""
    from sensor.store.sqlite import Store

    store = Store(settings.db_path, readonly=True)
    try:
        yield store
    finally:
        store.close()


SensorStore = Annotated[Any, Depends(get_store)]


class ZoneLookup:
    """ip -> policy zone id, from the configured policy file and, for zones by asset name or tag, the
    names, tags and roles in the store; recompiled when the file or those labels change."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] | None = None
        self._compiled: Any = None

    def zone_of(self, settings: Settings) -> Any:
        """A callable ip -> zone id or None; None when no (valid) policy is configured."""
        path = settings.policy_path
        if path is None:
            return None
        try:
            info = path.stat()
        except OSError:
            return None
        store = None
        if settings.db_path.is_file():
            from sensor.errors import UserError
            from sensor.store.sqlite import Store

            try:
                store = Store(settings.db_path, readonly=True)
            except UserError:
                store = None
        try:
            key = (info.st_mtime_ns, info.st_size, store.zone_labels_key() if store else None)
            labels = store.zone_labels() if store is not None and key != self._key else {}
        finally:
            if store is not None:
                store.close()
        if key != self._key:
            from policy.index import load_compiled

            def asset_tags(ip: str) -> set[str]:
                return labels.get(ip, set())

            try:
                self._compiled = load_compiled(path, asset_tags)
            except Exception:  # an invalid file: zones unknown until it is fixed (the sensor keeps the old)
                self._compiled = None
            self._key = key
        compiled = self._compiled
        if compiled is None:
            return None

        def lookup(ip: str) -> str | None:
            zone = compiled.zone_of(ip)
            return None if zone is None else str(zone.id)

        return lookup
