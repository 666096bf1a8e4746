"""``/api/v1/baseline``: the anomaly baseline (``sensor/detect``) — status, accept an alert, reset, diff.

Which baseline a request works on: the one in memory of the sensor running in this server when it
detects anomalies (``serve --baseline FILE``), saved to its file after each change, so the sensor's own
save at the end of the run keeps what was accepted; otherwise the file ``Settings.baseline_path``. The
changes are the CLI's (``sensor.detect.cli.accept_alert`` / ``reset_baseline``), made in place under the
sensor's lock, after which the detectors drop what they derived from the old content
(``AnomalyObserver.baseline_edited``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request

from api.auth import Permission
from api.deps import AppSettings, SensorStore, set_audit
from api.errors import ApiError, not_found
from api.routes.common import guarded, resource_router
from api.routes.policy import LOCK_TIMEOUT
from api.schemas.baseline import (
    Accepted,
    AcceptRequest,
    BaselineDiff,
    BaselineSensor,
    BaselineStatus,
    ResetDone,
    ResetRequest,
)
from api.settings import Settings
from sensor.detect.baseline import Baseline
from sensor.errors import UserError

router = resource_router("baseline", "/baseline")

MAX_DIFF_LINES = 1000
# File-only edits (no sensor running): one at a time in this process.
_FILE_LOCK = threading.Lock()


@dataclass
class _Target:
    baseline: Baseline
    path: Path | None
    observer: Any  # the running AnomalyObserver, or None


def _live_observer(request: Request) -> Any:
    sensor = getattr(request.app.state.sensor, "sensor", None)
    return getattr(sensor, "anomaly", None)


def _load(path: Path) -> Baseline:
    try:
        return Baseline.load(path)
    except UserError:
        raise ApiError(409, "baseline_file_invalid", "the baseline file cannot be read") from None


@contextmanager
def _target(request: Request, settings: Settings) -> Iterator[_Target]:
    """The baseline to read or change, with the lock that protects it held."""
    observer = _live_observer(request)
    if observer is not None:
        lock: threading.Lock = request.app.state.sensor.lock
        if not lock.acquire(timeout=LOCK_TIMEOUT):
            raise ApiError(503, "sensor_busy", "the sensor did not pause in time; retry")
        try:
            yield _Target(observer.baseline, observer.save_to or settings.baseline_path, observer)
        finally:
            lock.release()
        return
    path = settings.baseline_path
    if path is None:
        raise ApiError(409, "baseline_not_configured", "this server has no baseline (serve --baseline FILE)")
    with _FILE_LOCK:
        if not path.is_file():
            raise ApiError(409, "no_baseline_yet", "the baseline has not been learned and saved yet")
        yield _Target(_load(path), path, None)


def _save(target: _Target) -> None:
    if target.observer is not None:
        target.observer.baseline_edited()
    if target.path is not None:
        target.baseline.save(target.path)


@router.get(
    "",
    summary="baseline status: mode, learned counts, revision",
    response_model=BaselineStatus,
    **guarded(Permission.READ, 409, 503),
)
def baseline_status(request: Request, settings: AppSettings) -> BaselineStatus:
    observer = _live_observer(request)
    path = (observer.save_to if observer is not None else None) or settings.baseline_path
    exists = path is not None and path.is_file()
    if observer is None and not exists:
        return BaselineStatus(
            configured=path is not None,
            path=str(path) if path else None,
            exists=False,
            mode="none",
            revision=0,
            created=0.0,
            updated=0.0,
            counts={},
            relearn={},
        )
    with _target(request, settings) as target:
        b = target.baseline
        section = observer.section() if observer is not None else None
        return BaselineStatus(
            configured=True,
            path=str(path) if path else None,
            exists=exists,
            mode=section["mode"] if section else "stored",
            revision=b.revision,
            created=b.created,
            updated=b.updated,
            counts=b.counts(),
            relearn=dict(sorted(b.relearn.items())),
            sensor=BaselineSensor(**{k: v for k, v in section.items() if k != "facts"}) if section else None,
        )


@router.post(
    "/accept",
    summary="accept an anomaly alert: fold its evidence into the baseline",
    response_model=Accepted,
    **guarded(Permission.DETECTION_TUNE, 404, 409, 503),
)
def accept(request: Request, settings: AppSettings, store: SensorStore, body: AcceptRequest) -> Accepted:
    from sensor.detect.cli import accept_alert

    set_audit(request, "baseline.accept", f"alert:{body.alert_id}", body.comment[:200])
    alert = store.get_alert(body.alert_id)
    if alert is None:
        raise not_found("alert")
    with _target(request, settings) as target:
        try:
            added, total, committed = accept_alert(target.baseline, body.alert_id, alert)
        except UserError as exc:
            raise ApiError(409, "not_acceptable", str(exc)[:500]) from None
        if committed:
            _save(target)
        return Accepted(
            alert_id=body.alert_id,
            rule=str(alert["rule"]),
            facts=total,
            added=added,
            revision=target.baseline.revision,
            live=target.observer is not None,
        )


@router.post(
    "/reset",
    summary="forget one asset (optionally learning it again) or everything",
    response_model=ResetDone,
    **guarded(Permission.DETECTION_TUNE, 409, 503),
)
def reset(request: Request, settings: AppSettings, body: ResetRequest) -> ResetDone:
    from sensor.detect.cli import reset_baseline

    asset = str(body.asset.ip) if body.asset is not None else None
    relearn = body.asset.relearn if body.asset is not None else None
    set_audit(request, "baseline.reset", f"asset:{asset}" if asset else "baseline", body.comment[:200])
    with _target(request, settings) as target:
        removed, detail = reset_baseline(target.baseline, asset, relearn)
        _save(target)
        return ResetDone(
            removed=removed,
            detail=detail,
            revision=target.baseline.revision,
            live=target.observer is not None,
        )


@router.get(
    "/diff",
    summary="changes against the saved file (running sensor) or of the last saved revision",
    response_model=BaselineDiff,
    **guarded(Permission.READ, 409, 503),
)
def baseline_diff(request: Request, settings: AppSettings) -> BaselineDiff:
    from sensor.detect.baseline import diff

    with _target(request, settings) as target:
        b = target.baseline
        if target.observer is not None:
            saved = _load(target.path) if target.path is not None and target.path.is_file() else Baseline()
            changes = diff(saved, b)
            counts = {f"{k}_count": len(v) for k, v in changes.items()}
            return BaselineDiff(
                against="saved",
                revision=b.revision,
                added=changes["added"][:MAX_DIFF_LINES],
                removed=changes["removed"][:MAX_DIFF_LINES],
                changed=changes["changed"][:MAX_DIFF_LINES],
                detail=counts,
            )
        if not b.history:
            return BaselineDiff(against="none", revision=b.revision, added=[], removed=[], changed=[])
        last = b.history[-1]
        return BaselineDiff(
            against="last_revision",
            revision=int(last.get("revision", b.revision)),
            added=list(last.get("added") or []),
            removed=list(last.get("removed") or []),
            changed=list(last.get("changed") or []),
            detail={k: v for k, v in last.items() if k not in ("added", "removed", "changed")},
        )
