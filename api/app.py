"""The FastAPI application: ``create_app(settings)`` builds it; nothing here runs at import.

Requests pass through four small ASGI layers before any route code, outermost first:

+-----------------+--------------------------------------------------------------------------------+
| PathGuard       | ``..``/``.`` segments, backslashes, NUL or encoded slashes in the path → 400   |
|                 | (HOSTILE_INPUTS A13: nothing on disk is ever reachable through a path).         |
| BodyLimit       | Content-Length over the cap → 413 before a byte is read; bodies without one    |
|                 | are counted as they arrive and cut at the cap (A6, Starlette CVE-2024-47874).  |
| ContentType     | a body that is not JSON (or PKCS#10 on the EST paths) → 415 (A15).             |
| Audit           | every POST/PUT/PATCH/DELETE that reached a route with a known caller becomes   |
|                 | one hash-chained audit record with its outcome (DESIGN.md §7).                  |
+-----------------+--------------------------------------------------------------------------------+
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import metadata
from typing import Any, Protocol

import anyio
from fastapi import FastAPI
from fastapi.middleware import Middleware

from api.audit import AuditLog
from api.auth import FailedAuthLimiter, Principal, TokenStore
from api.deps import connect
from api.errors import ApiError, BodyTooLarge, install_error_handlers
from api.settings import Settings

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EST_PREFIX = "/.well-known/est/"


class SensorHandle(Protocol):
    """What the API needs from a sensor running in the same process (``zonewarden serve``)."""

    def status(self) -> dict[str, Any]:
        """``{"sensor": {running, mode, interface, finished}, "summary": <Sensor.summary() shape>}``."""
        ...


async def _send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class PathGuard:
    """400 for traversal-shaped paths, decoded or not (A13)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = bytes(scope.get("raw_path") or scope["path"].encode()).lower()
            segments = scope["path"].split("/")
            if (
                any(s in ("..", ".") for s in segments)
                or "\\" in scope["path"]
                or "\x00" in scope["path"]
                or b"%2e%2e" in raw
                or b"%2f" in raw
                or b"%5c" in raw
                or b"%00" in raw
            ):
                await _send_error(send, 400, "path_refused", "path segments like '..' are not accepted")
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else by counting what arrives (A6)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request bodies are limited to {self.max_bytes} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _send_error(send, 400, "bad_content_length", "Content-Length is not a number")
                return
            if length > self.max_bytes:
                await _send_error(send, 413, "body_too_large", message, {"Connection": "close"})
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_error(send, 413, "body_too_large", message, {"Connection": "close"})


class ContentTypeGuard:
    """415 when a request carries a body of a type the API does not take (A15)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            length = _header(scope, b"content-length")
            has_body = (length is not None and length.strip() not in (b"0", b"")) or (
                _header(scope, b"transfer-encoding") is not None
            )
            if has_body:
                ctype = (
                    (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower().decode("latin-1")
                )
                if scope["path"].startswith(EST_PREFIX):
                    allowed = ctype == "application/pkcs10"
                    wanted = "application/pkcs10"
                else:
                    allowed = ctype == "application/json" or (
                        ctype.startswith("application/") and ctype.endswith("+json")
                    )
                    wanted = "application/json"
                if not allowed:
                    await _send_error(send, 415, "unsupported_media_type", f"send the body as {wanted}")
                    return
        await self.app(scope, receive, send)


class AuditTrail:
    """One audit record per state-changing request that reached a route with an authenticated caller.

    A route names the change with :func:`api.deps.set_audit` (``alerts.ack``, ``alert:<id>``); without
    that the record says ``<METHOD> <path>``. The result is ``ok <status>`` or ``refused <status>``, so
    a forbidden attempt is on record too.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        status = 500

        async def tracking_send(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            state = scope.get("state") or {}
            principal = state.get("principal")
            if isinstance(principal, Principal):
                what, obj, detail = state.get("audit") or (
                    f"{scope['method']} {scope['path']}",
                    scope["path"],
                    "",
                )
                outcome = f"{'ok' if status < 400 else 'refused'} {status}"
                result = f"{outcome}: {detail}" if detail else outcome
                await anyio.to_thread.run_sync(self._write, principal.actor, what, obj, result)

    def _write(self, who: str, what: str, obj: str, result: str) -> None:
        conn = connect(self.settings.db_path)
        try:
            AuditLog(conn).append(who, what, obj[:512], result[:1024])
        except Exception:  # the response is already sent; losing the record must at least be loud
            logger.exception("could not write the audit record for %s %s", what, obj)
        finally:
            conn.close()


def project_version() -> str:
    try:
        return metadata.version("zonewarden")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


OPENAPI_DESCRIPTION = """\
zonewarden's web API: the inventory, communication graph, alerts, IEC 62443 zone/conduit policy,
baseline, rules and device PKI of a passive OT/ICS monitor.

Every route except `GET /health` needs `Authorization: Bearer <token>`. A token carries one role; each
operation names the permission it needs in `x-permission`. Roles and permissions:

| permission | viewer | analyst | admin | pki-admin | auditor |
|---|---|---|---|---|---|
| read | x | x | x | x | x |
| alerts:write | | x | x | | |
| detection:tune | | x | x | | |
| assets:write | | x | x | | |
| policy:write | | | x | | |
| pki:write | | | | x | |
| audit:read | | | x | | x |
| tokens:manage | | | x | | |

Lists are paginated (`limit` 1-1000, `offset` >= 0) and refuse unknown query parameters. Errors are
`{"error": {"code": ..., "message": ...}}`. Every state change is written to a hash-chained audit log.
"""


def create_app(settings: Settings, sensor: SensorHandle | None = None) -> FastAPI:
    """Build the application for ``settings``; ``sensor`` is the in-process sensor when one runs."""
    from api.deps import ZoneLookup
    from api.routes import register_routes
    from sensor.store.sqlite import Store

    Store(settings.db_path).close()  # the sensor store's schema (migrations) before anything reads it
    conn = connect(settings.db_path)
    try:
        TokenStore.create_schema(conn)
        AuditLog(conn)
    finally:
        conn.close()

    app = FastAPI(
        title="zonewarden",
        version=project_version(),
        description=OPENAPI_DESCRIPTION,
        # The document is served by an authenticated route (every route but /health needs a token).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        middleware=[
            Middleware(PathGuard),
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
            Middleware(ContentTypeGuard),
            Middleware(AuditTrail, settings=settings),
        ],
    )
    app.state.settings = settings
    app.state.sensor = sensor
    app.state.graph_reads = threading.BoundedSemaphore(max(1, settings.concurrent_graph_reads))
    app.state.zone_lookup = ZoneLookup()
    app.state.auth_limiter = FailedAuthLimiter(
        settings.auth_failures_allowed, settings.auth_failure_window_seconds, settings.auth_tracked_clients
    )
    install_error_handlers(app)
    register_routes(app, settings)
    # The dashboard (dashboard/, built by `make dashboard` into api/static/): static files at "/", mounted
    # last so every API route matches first. Its pages read the API with the user's token; the files
    # themselves hold nothing secret, so they need none.
    from pathlib import Path

    from fastapi.staticfiles import StaticFiles

    dashboard_dir = Path(__file__).with_name("static")
    if (dashboard_dir / "index.html").is_file():
        app.mount("/", StaticFiles(directory=dashboard_dir, html=True), name="dashboard")
    return app


__all__ = ["ApiError", "SensorHandle", "create_app"]
