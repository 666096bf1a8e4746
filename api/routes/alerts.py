"""``/api/v1/alerts``: list, filter, get, acknowledge, close (with a comment), and a server-sent-events
stream of new alerts — over the sensor store (``sensor.store.sqlite.Store``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import Path, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import Permission, Principal
from api.deps import AppSettings, SensorStore, get_principal, set_audit
from api.errors import ApiError, not_found
from api.routes.common import guarded, resource_router
from api.schemas.common import Comment, Page
from api.schemas.inventory import Alert, AlertQuery
from api.settings import Settings

router = resource_router("alerts", "/alerts")

AlertId = Annotated[
    str,
    Path(
        min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$", description="the alert's deterministic id"
    ),
]
SSE_HEARTBEAT_SECONDS = 15.0


@router.get(
    "", summary="alerts, newest first, filtered", response_model=Page[Alert], **guarded(Permission.READ)
)
def list_alerts(store: SensorStore, params: Annotated[AlertQuery, Query()]) -> Page[Any]:
    rows = store.list_alerts(
        status=params.status,
        category=params.category,
        rule=params.rule,
        since=params.since,
        limit=params.limit,
        offset=params.offset,
    )
    filtered = any(v is not None for v in (params.status, params.category, params.rule, params.since))
    total = (
        len(
            store.list_alerts(
                status=params.status,
                category=params.category,
                rule=params.rule,
                since=params.since,
                limit=10**9,
            )
        )
        if filtered
        else store.count_alerts()
    )
    return Page(items=rows, total=total, limit=params.limit, offset=params.offset)


def _stream_rows(settings: Settings, since: float) -> list[dict[str, Any]]:
    from sensor.store.sqlite import Store

    store = Store(settings.db_path, readonly=True)
    try:
        rows: list[dict[str, Any]] = store.list_alerts(since=since, limit=1000)
        return rows
    finally:
        store.close()


@router.get(
    "/stream",
    summary="server-sent events: one `alert` event per new or updated alert",
    response_class=StreamingResponse,
    **guarded(
        Permission.READ,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "an event stream",
            }
        },
    ),
)
async def stream_alerts(
    request: Request,
    settings: AppSettings,
    since: Annotated[
        float | None, Query(ge=0, le=2**33, description="also send alerts seen since (epoch s)")
    ] = None,
    wait: Annotated[
        float, Query(ge=0, le=86400, description="seconds before the stream ends (reconnect)")
    ] = 300.0,
) -> StreamingResponse:
    deadline = time.monotonic() + min(wait, settings.sse_max_seconds)

    async def events() -> AsyncIterator[bytes]:
        cursor = time.time() if since is None else since
        sent: dict[str, int] = {}
        last_beat = time.monotonic()
        yield b": zonewarden alert stream\n\n"
        while True:
            rows = await anyio.to_thread.run_sync(_stream_rows, settings, cursor)
            for row in sorted(rows, key=lambda r: (r["last_ts"], r["alert_id"])):
                if sent.get(row["alert_id"]) == row["count"]:
                    continue
                sent[row["alert_id"]] = row["count"]
                cursor = max(cursor, float(row["last_ts"]))
                data = json.dumps(row, separators=(",", ":"), default=str)
                yield f"id: {row['alert_id']}\nevent: alert\ndata: {data}\n\n".encode()
            if len(sent) > 10_000:  # bounded: forget, the cursor keeps old alerts out
                sent.clear()
            now = time.monotonic()
            if now >= deadline or await request.is_disconnected():
                return
            if now - last_beat >= SSE_HEARTBEAT_SECONDS:
                last_beat = now
                yield b": keep-alive\n\n"
            await anyio.sleep(min(settings.sse_poll_seconds, max(0.0, deadline - now)))

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{alert_id}", summary="one alert", response_model=Alert, **guarded(Permission.READ, 404))
def get_alert(store: SensorStore, alert_id: AlertId) -> dict[str, Any]:
    row = store.get_alert(alert_id)
    if row is None:
        raise not_found("alert")
    return dict(row)


def _transition(
    request: Request, settings: Settings, alert_id: str, body: Comment, action: str
) -> dict[str, Any]:
    from sensor.store.sqlite import Store

    principal: Principal = get_principal(request)
    set_audit(request, f"alerts.{action}", f"alert:{alert_id}", body.comment[:200])
    store = Store(settings.db_path)
    try:
        current = store.get_alert(alert_id)
        if current is None:
            raise not_found("alert")
        change = store.ack_alert if action == "ack" else store.close_alert
        if not change(alert_id, principal.actor, note=body.comment or None):
            raise ApiError(409, "alert_state", f"alert is {current['status']}; cannot {action} it")
        row: dict[str, Any] | None = store.get_alert(alert_id)
        if row is None:
            raise not_found("alert")
        return row
    finally:
        store.close()


@router.post(
    "/{alert_id}/ack",
    summary="acknowledge an open alert",
    response_model=Alert,
    **guarded(Permission.ALERTS_WRITE, 404, 409),
)
def ack_alert(request: Request, settings: AppSettings, alert_id: AlertId, body: Comment) -> dict[str, Any]:
    return _transition(request, settings, alert_id, body, "ack")


@router.post(
    "/{alert_id}/close",
    summary="close an alert",
    response_model=Alert,
    **guarded(Permission.ALERTS_WRITE, 404, 409),
)
def close_alert(request: Request, settings: AppSettings, alert_id: AlertId, body: Comment) -> dict[str, Any]:
    return _transition(request, settings, alert_id, body, "close")
