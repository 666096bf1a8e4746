"""``/api/v1/policy``: the IEC 62443 zone/conduit policy (``policy/``) — the current file, validate,
replace with a hot reload, the compliance report, a learned proposal and exports.

Where each answer comes from:

* **current / export**: the file ``serve --policy FILE`` names (``Settings.policy_path``), read and
  validated with ``policy.load.parse_policy`` on every request, so an edit on disk shows at once.
* **validate / replace**: ``parse_policy`` (every problem with its line, refused as 422) then
  ``policy.lint.lint``. A replacement is written next to the file and renamed over it (atomic: a reader
  sees the old or the new file, never half), then swapped into the running sensor's
  :class:`policy.observer.PolicyObserver` through the runner's file watcher (``policy/reload.py``,
  ``LiveRunner.reload_policy``), which swaps each version of the file once, whether it or this route
  saw it first. An invalid policy is never written, so the old one keeps running.
* **compliance**: ``zonewarden policy check --json`` without re-reading captures. The violations are
  the policy alerts of the store merged as the CLI merges them (``policy.cli.merge_violations``); the
  per-conduit counters exist only in the policy observer of a sensor running in this server, so
  without one they are null (never invented from edges, which do not carry what the policy judges).
* **learn**: ``policy.learn.render_policy`` over the ``TrafficCollector`` the serve sensor feeds (the
  store's edges lack the register spans, values, nodes and topics a least-privilege policy needs).
  Clients never name files on the server (HOSTILE_INPUTS A13); the proposal is returned, not installed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response

from api.auth import Permission
from api.deps import AppSettings, SensorStore, set_audit
from api.errors import ApiError
from api.routes.common import guarded, resource_router
from api.schemas.policy import (
    ComplianceReport,
    ExportQuery,
    LearnedPolicy,
    LearnRequest,
    LintFinding,
    PolicyCurrent,
    PolicyReplace,
    PolicyReplaced,
    PolicyText,
    PolicyValidation,
)
from api.settings import Settings
from policy.load import MAX_FILE_BYTES, PolicyError, line_map, parse_policy
from policy.model import Policy

logger = logging.getLogger(__name__)

router = resource_router("policy", "/policy")

POSTED_SOURCE = "policy.yaml"  # the file name problems in posted text are reported against
MAX_PROBLEMS = 100
LOCK_TIMEOUT = 5.0  # seconds to wait for the sensor between two frames
ALL_ROWS = 10**9
EXPORT_MEDIA = {
    "nftables": ("text/plain", "nft"),
    "suricata": ("text/plain", "rules"),
    "csv": ("text/csv", "csv"),
    "markdown": ("text/markdown", "md"),
}

# One replacement at a time in this process (the check, the write and the swap belong together).
_REPLACE_LOCK = threading.Lock()


def setup(app: FastAPI, settings: Settings) -> None:
    """Remember when the running sensor loaded its policy (it did just before the app was built)."""
    app.state.policy_loaded_at = time.time() if _observer(app.state.sensor) is not None else None


# --- helpers ---------------------------------------------------------------------------------------


def _observer(handle: Any) -> Any:
    """The running sensor's PolicyObserver, or None (no sensor, or one without a policy)."""
    sensor = getattr(handle, "sensor", None)
    return getattr(sensor, "policy", None)


class _SensorLock:
    """Hold the running sensor's lock (the pipeline releases it between frames) while reading it."""

    def __init__(self, handle: Any) -> None:
        self.lock: threading.Lock | None = getattr(handle, "lock", None)

    def __enter__(self) -> None:
        if self.lock is not None and not self.lock.acquire(timeout=LOCK_TIMEOUT):
            raise ApiError(503, "sensor_busy", "the sensor did not pause in time; retry")

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.release()


def invalid_policy(exc: PolicyError) -> ApiError:
    """422 listing every ``file:line: problem`` (each also as an error detail with its line)."""
    problems = exc.problems
    first = f"{exc.source}:{problems[0].line}: {problems[0].message}" if problems else str(exc)
    details = [
        {
            "loc": ["body", "yaml", p.line],
            "msg": f"{exc.source}:{p.line}: {p.message}"[:500],
            "type": "policy_problem",
        }
        for p in problems[:MAX_PROBLEMS]
    ]
    return ApiError(
        422,
        "invalid_policy",
        f"{len(problems)} problem(s) in the policy; first: {first}"[:1000],
        details=details,
    )


def _findings(policy: Policy, text: str, source: str) -> list[LintFinding]:
    from policy.lint import lint

    return [
        LintFinding(line=f.line, code=f.code, message=f.message, text=f.format(source))
        for f in lint(policy, line_map(text))
    ]


def _check(text: str, source: str) -> tuple[Policy, list[LintFinding]]:
    try:
        policy = parse_policy(text, source)
    except PolicyError as exc:
        raise invalid_policy(exc) from None
    return policy, _findings(policy, text, source)


def _policy_path(settings: Settings) -> Path:
    if settings.policy_path is None:
        raise ApiError(404, "not_found", "no policy is configured (serve --policy FILE)")
    return settings.policy_path


def _read_current(path: Path) -> tuple[str, Policy, float]:
    """The file's text, the policy and its mtime; 409 when the file on disk is missing or invalid."""
    try:
        info = path.stat()
        if info.st_size > MAX_FILE_BYTES:
            raise ApiError(
                409, "policy_file_invalid", f"the policy file is larger than {MAX_FILE_BYTES} bytes"
            )
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ApiError(
            409, "policy_file_unreadable", f"cannot read the policy file: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise ApiError(409, "policy_file_invalid", "the policy file is not UTF-8 text") from None
    try:
        policy = parse_policy(text, path.name)
    except PolicyError as exc:
        err = invalid_policy(exc)
        raise ApiError(409, "policy_file_invalid", err.message, details=err.details) from None
    return text, policy, info.st_mtime


def _current(request: Request, path: Path, text: str, policy: Policy, mtime: float) -> dict[str, Any]:
    observer = _observer(request.app.state.sensor)
    return {
        "path": str(path),
        "yaml": text,
        "policy": policy.model_dump(mode="json", by_alias=True),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "zones": len(policy.zones),
        "conduits": len(policy.conduits),
        "modified_at": mtime,
        "loaded_at": getattr(request.app.state, "policy_loaded_at", None) if observer is not None else None,
        "sensor_reloads": int(observer.reloads) if observer is not None else None,
    }


def write_atomically(path: Path, text: str) -> None:
    """Write beside ``path`` and rename over it, fsynced, keeping the old file's permissions."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- routes ----------------------------------------------------------------------------------------


@router.get(
    "",
    summary="the current policy: YAML text, parsed, source path and load time",
    response_model=PolicyCurrent,
    **guarded(Permission.READ, 404, 409, 503),
)
def current_policy(request: Request, settings: AppSettings) -> dict[str, Any]:
    path = _policy_path(settings)
    text, policy, mtime = _read_current(path)
    return _current(request, path, text, policy, mtime)


@router.post(
    "/validate",
    summary="check policy YAML: 422 with every `file:line` problem, or ok with the lint warnings",
    response_model=PolicyValidation,
    **guarded(Permission.READ),
)
def validate_policy(request: Request, body: PolicyText) -> PolicyValidation:
    set_audit(request, "policy.validate", "policy:posted")
    policy, findings = _check(body.yaml, POSTED_SOURCE)
    return PolicyValidation(zones=len(policy.zones), conduits=len(policy.conduits), findings=findings)


@router.put(
    "",
    summary="replace the policy: validate, write atomically, hot-reload the running sensor",
    response_model=PolicyReplaced,
    **guarded(Permission.POLICY_WRITE, 404, 409, 503),
)
def replace_policy(request: Request, settings: AppSettings, body: PolicyReplace) -> dict[str, Any]:
    from policy.index import load_compiled

    if settings.policy_path is None:
        raise ApiError(409, "policy_not_configured", "this server has no policy file (serve --policy FILE)")
    path = settings.policy_path
    digest = hashlib.sha256(body.yaml.encode("utf-8")).hexdigest()
    set_audit(request, "policy.replace", f"policy:{path.name}", f"sha256={digest[:16]} {body.comment}")
    with _REPLACE_LOCK:
        policy, findings = _check(body.yaml, path.name)
        write_atomically(path, body.yaml)
        handle = request.app.state.sensor
        observer = _observer(handle)
        reloaded = False
        reload = getattr(handle, "reload_policy", None)
        if observer is not None and reload is not None:
            # The runner's policy watcher (sensor/live.py) loads the file just written, unless its thread
            # already did: one swap per change, with the asset names and tags zones may use.
            reloaded = bool(reload())
        elif observer is not None:
            # The one-assignment swap of PolicyObserver.replace_policy: the packet loop sees the old or
            # the new policy, never a mix. Compiled from the file just written, as the watcher does.
            observer.replace_policy(load_compiled(path, observer.policy.zones.asset_tags))
            reloaded = True
        if reloaded:
            request.app.state.policy_loaded_at = time.time()
        mtime = path.stat().st_mtime
    logger.info("policy %s replaced (sha256 %s), sensor reloaded: %s", path, digest[:16], reloaded)
    return {**_current(request, path, body.yaml, policy, mtime), "reloaded": reloaded, "findings": findings}


@router.get(
    "/compliance",
    summary="compliance report (`zonewarden policy check --json`): stored violations, live counters",
    response_model=ComplianceReport,
    **guarded(Permission.READ, 404, 409, 503),
)
def compliance_report(request: Request, settings: AppSettings, store: SensorStore) -> dict[str, Any]:
    from policy.cli import merge_violations

    path = _policy_path(settings)
    rows = store.list_alerts(category="policy", limit=ALL_ROWS)
    violations = merge_violations(rows)
    handle = request.app.state.sensor
    observer = _observer(handle)
    counters: dict[str, Any] = dict.fromkeys(
        ("conduits", "no_conduit", "intra_zone_allowed", "default_allowed", "unused_rules")
    )
    operations = None
    if observer is not None:
        with _SensorLock(handle):
            counters = observer.report()
            operations = int(observer.operations)
    summary: dict[str, Any] = {
        "policy": str(path),
        "sources": {
            "violations": "store",
            "counters": "sensor" if observer is not None else "unavailable: no sensor runs in this server",
        },
        "files": [str(p) for p in getattr(handle, "paths", [])] if observer is not None else [],
        "interface": getattr(handle, "interface", None) if observer is not None else None,
        "operations": operations,
        "violations": sum(int(v["count"]) for v in violations),
        "alerts": len(rows),
    }
    return {"violations": violations, **counters, "summary": summary}


@router.post(
    "/learn",
    summary="propose a policy from what the running sensor observed (returned, not installed)",
    response_model=LearnedPolicy,
    **guarded(Permission.POLICY_WRITE, 409, 503),
)
def learn_policy(request: Request, body: LearnRequest) -> LearnedPolicy:
    from policy.learn import TrafficCollector, render_policy

    set_audit(request, "policy.learn", "policy:proposal", f"site={body.site}")
    handle = request.app.state.sensor
    collector = getattr(handle, "policy_collector", None)
    if collector is None:
        raise ApiError(
            409, "nothing_observed", "learning needs a sensor running in this server (serve --sniff/--replay)"
        )
    interface = getattr(handle, "interface", None)
    sources = [f"live capture on {interface}"] if interface else [Path(p).name for p in handle.paths]
    with _SensorLock(handle):
        if not collector.pairs:
            raise ApiError(409, "nothing_observed", "the sensor has not seen any traffic a policy judges yet")
        # copy what was observed and let the sensor go on: zone proposal (graph communities) is the
        # slow part and must not hold up packet processing, and the copy is made quickest as bytes
        frozen = collector.freeze()
    observed = TrafficCollector.thaw(frozen)
    text = render_policy(observed, sources, body.site)
    return LearnedPolicy(
        yaml=text, sources=sources, hosts=len(observed.hosts), host_pairs=len(observed.pairs)
    )


@router.get(
    "/export",
    summary="the policy as nftables, Suricata rules, CSV or Markdown",
    response_class=Response,
    **guarded(
        Permission.READ,
        404,
        409,
        503,
        responses={
            200: {
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}},
                    "text/markdown": {"schema": {"type": "string"}},
                },
                "description": "the exported policy",
            }
        },
    ),
)
def export_policy(settings: AppSettings, params: Annotated[ExportQuery, Query()]) -> Response:
    from policy.export import export

    path = _policy_path(settings)
    _text, policy, _mtime = _read_current(path)
    media, suffix = EXPORT_MEDIA[params.format]
    content = export(policy, params.format, sid_base=params.sid_base)
    return Response(
        content,
        media_type=f"{media}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="zonewarden-policy.{suffix}"'},
    )
