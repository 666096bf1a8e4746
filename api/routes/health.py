"""``GET /health`` (no authentication: the container HEALTHCHECK), ``GET /api/v1/status``, the OpenAPI doc."""

from __future__ import annotations

import platform
from typing import Any

import fastapi
from fastapi import APIRouter, Request

from api.app import project_version
from api.auth import Permission
from api.deps import AppSettings
from api.routes.common import guarded, resource_router
from api.schemas.system import Drops, Health, SensorInfo, Status, StatusSource
from api.settings import API_PREFIX, Settings

PROTOCOLS = ("modbus", "opcua", "mqtt", "tls")

public_router = APIRouter(tags=["system"])
router = resource_router("system")


@public_router.get("/health", summary="liveness (no token needed)", response_model=Health)
@public_router.get(f"{API_PREFIX}/health", summary="liveness (no token needed)", response_model=Health)
def health() -> Health:
    return Health(status="ok", version=project_version())


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def build_status(
    summary: dict[str, Any],
    sensor: SensorInfo,
    source: StatusSource = "sensor",
    saved_at: float | None = None,
) -> Status:
    """Shape a sensor summary (``Sensor.summary()``, or the store's copy of its counters) into the
    status document."""
    capture = {k: _int(v) for k, v in (summary.get("capture") or {}).items()}
    flow_counters = summary.get("flow_table") or {}
    return Status(
        sensor=sensor,
        source=source,
        saved_at=saved_at,
        packets=_int(summary.get("packets")),
        bytes=_int(summary.get("bytes")),
        flows=_int(summary.get("flows")),
        decode_errors=_int(summary.get("decode_errors")),
        gaps=_int(flow_counters.get("tcp.reassembly_gap")),
        drops=Drops(kernel=capture.get("kernel_drops", 0), queue=capture.get("queue_drops", 0)),
        capture=capture,
        capture_by_interface={
            str(name): {k: _int(v) for k, v in counters.items()}
            for name, counters in (summary.get("capture_by_interface") or {}).items()
            if isinstance(counters, dict)
        },
        protocols={p: summary[p] for p in PROTOCOLS if isinstance(summary.get(p), dict)},
        alerts=summary.get("alerts") or {},
        versions={
            "zonewarden": project_version(),
            "python": platform.python_version(),
            "fastapi": fastapi.__version__,
        },
    )


@router.get(
    "/status", summary="sensor counters and versions", response_model=Status, **guarded(Permission.READ)
)
def status(request: Request, settings: AppSettings) -> Status:
    handle = request.app.state.sensor
    if handle is None:
        return _stored_status(settings)
    doc = handle.status()
    info = SensorInfo(**doc["sensor"])
    return build_status(doc["summary"], info)


@router.get(
    "/openapi.json",
    summary="this API's OpenAPI document",
    include_in_schema=False,
    **guarded(Permission.READ),
)
def openapi(request: Request) -> dict[str, Any]:
    document: dict[str, Any] = request.app.openapi()
    return document


def _stored_status(settings: Settings) -> Status:
    """No sensor in this server: the counters the last sensor run saved in the store, if any."""
    from sensor.store.sqlite import Store
    from sensor.store.summary_counters import SAVED_AT, unflatten_summary

    idle = SensorInfo(running=False, mode="none", finished=False)
    store = Store(settings.db_path, readonly=True)
    try:
        saved = unflatten_summary(store.counters())
    finally:
        store.close()
    if not saved:
        return build_status({}, idle, "none")
    stamp = saved.get(SAVED_AT)
    return build_status(saved, idle, "store", float(stamp) if isinstance(stamp, int) else None)
