"""``/api/v1/alerts``: list, filter, get, acknowledge, close (with a comment), and a server-sent-events
stream of new alerts — over the sensor store (``sensor.store.sqlite.Store``).

The stream follows the store's insertion order (``alerts.seq``, bumped whenever an alert is written or
changes), not packet time: alerts from a replay of last year's captures into a running server are new
alerts too. Each event's ``id`` is that sequence number, so a client that reconnects with
``Last-Event-ID`` (as EventSource does) gets exactly what it missed.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import Permission, Principal
from api.deps import AppSettings, SensorStore, get_principal, set_audit
from api.errors import ApiError, not_found
from api.routes.common import guarded, resource_router
from api.schemas.alerts import Alert, AlertQuery, api_alert
from api.schemas.common import Comment, Page
from api.settings import Settings
from sensor.store.alert_filter import AlertFilter

router = resource_router("alerts", "/alerts")

AlertId = Annotated[
    str,
    Path(
        min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$", description="the alert's deterministic id"
    ),
]
SSE_HEARTBEAT_SECONDS = 15.0
STREAM_BATCH = 500  # rows a stream reads per poll (the next poll continues after the last one sent)
STREAM_BACKLOG = 1000  # alerts a stream opened with ?since= sends before following new ones
MAX_EVENT_ID = 2**63 - 1


def alert_filter(params: AlertQuery) -> AlertFilter:
    return AlertFilter(
        status=params.status,
        category=params.category,
        rule=params.rule,
        severity=params.severity,
        src_ip=params.src_ip,
        dest_ip=params.dest_ip,
        ip=params.ip,
        zone=params.zone,
        since=params.since,
        until=params.until,
        q=params.q,
    )


@router.get(
    "", summary="alerts, newest first, filtered", response_model=Page[Alert], **guarded(Permission.READ)
)
def list_alerts(store: SensorStore, params: Annotated[AlertQuery, Query()]) -> Page[Any]:
    selection = alert_filter(params)
    rows = store.list_alerts(selection, limit=params.limit, offset=params.offset)
    return Page(
        items=[api_alert(r) for r in rows],
        total=store.count_alerts(selection),
        limit=params.limit,
        offset=params.offset,
    )


def _stream_start(settings: Settings, since: float | None) -> tuple[int, list[dict[str, Any]]]:
    """The store's newest sequence number now, and the backlog a ``?since=`` stream starts with."""
    from sensor.store.sqlite import Store

    store = Store(settings.db_path, readonly=True)
    try:
        head = store.last_alert_seq()
        backlog: list[dict[str, Any]] = []
        if since is not None:
            backlog = store.list_alerts(
                AlertFilter(since=since), limit=STREAM_BACKLOG, oldest_change_first=True
            )
            backlog = [r for r in backlog if r["seq"] <= head]
        return head, backlog
    finally:
        store.close()


def _stream_rows(settings: Settings, after: int) -> list[dict[str, Any]]:
    from sensor.store.sqlite import Store

    store = Store(settings.db_path, readonly=True)
    try:
        rows: list[dict[str, Any]] = store.list_alerts(
            AlertFilter(after_seq=after), limit=STREAM_BATCH, oldest_change_first=True
        )
        return rows
    finally:
        store.close()


def _event(row: dict[str, Any]) -> bytes:
    data = json.dumps(api_alert(row), separators=(",", ":"), default=str)
    return f"id: {row['seq']}\nevent: alert\ndata: {data}\n\n".encode()


def _resume_point(last_event_id: str | None) -> int | None:
    """The sequence number a reconnecting client last received; None for anything else (an id from
    an older server, garbage): the stream then starts from now."""
    if last_event_id is None or not last_event_id.isascii() or not last_event_id.isdigit():
        return None
    value = int(last_event_id)
    return value if value <= MAX_EVENT_ID else None


@router.get(
    "/stream",
    summary="server-sent events: one `alert` event per new or changed alert, in insertion order",
    response_class=StreamingResponse,
    **guarded(
        Permission.READ,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "an event stream; each event's id is the alert's `seq`",
            }
        },
    ),
)
async def stream_alerts(
    request: Request,
    settings: AppSettings,
    since: Annotated[
        float | None,
        Query(ge=0, le=2**33, description="first send the alerts last seen since this packet time (epoch s)"),
    ] = None,
    wait: Annotated[
        float, Query(ge=0, le=86400, description="seconds before the stream ends (reconnect)")
    ] = 300.0,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=64,
            description="resume after this event id (an alert `seq`); wins over `since`",
        ),
    ] = None,
) -> StreamingResponse:
    deadline = time.monotonic() + min(wait, settings.sse_max_seconds)
    resume = _resume_point(last_event_id)
    # The starting point is fixed before the response starts (StreamingResponse sends the status and
    # headers before it reads the first event): a client that holds the 200 gets every alert committed
    # after it. Read in the generator instead, an alert committed between the headers and that read
    # would count as "before now" and be lost to a stream that was already open.
    backlog: list[dict[str, Any]] = []
    if resume is not None:
        start = resume
    else:
        start, backlog = await anyio.to_thread.run_sync(_stream_start, settings, since)

    async def events() -> AsyncIterator[bytes]:
        yield b": zonewarden alert stream\n\n"
        cursor = start
        for row in backlog:
            yield _event(row)
        last_beat = time.monotonic()
        while True:
            rows = await anyio.to_thread.run_sync(_stream_rows, settings, cursor)
            for row in rows:
                cursor = max(cursor, int(row["seq"]))
                yield _event(row)
            now = time.monotonic()
            if now >= deadline or await request.is_disconnected():
                return
            if len(rows) >= STREAM_BATCH:
                continue  # more are waiting
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
    return api_alert(row)


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
        return api_alert(row)
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
