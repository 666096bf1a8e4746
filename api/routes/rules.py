"""``/api/v1/rules``: the Suricata-format rule set (``rules/``) — list with provenance, enable/disable a
SID, and rebuild the active set with suricata-update, offline.

The same functions as ``zonewarden rules list|enable|disable|update --offline`` (``rules.manage``), on
the directories ``serve --rules-dir DIR --rules-data-dir DIR`` names. Without ``--rules-dir`` the list
shows the rules shipped with zonewarden and every change is refused (409): the API never edits the
installed package's own files. Enabling or disabling moves ``gid:sid`` between enable.conf and
disable.conf; like the CLI, it takes effect at the next update.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query, Request

from api.auth import Permission
from api.deps import AppSettings, set_audit
from api.errors import ApiError, not_found
from api.routes.common import guarded, resource_router
from api.schemas.common import Comment
from api.schemas.rules import RulePage, RuleQuery, RuleRecord, RuleToggled, UpdateOut, UpdateRequest
from api.settings import Settings
from sensor.errors import UserError

router = resource_router("rules", "/rules")

Sid = Annotated[int, PathParam(ge=1, le=2**32 - 1, description="the rule's signature id", examples=[9100001])]
UPDATE_TIMEOUT = 300.0
# enable/disable/update edit the same files: one at a time in this process.
_RULES_LOCK = threading.Lock()


def _records(settings: Settings) -> tuple[list[dict[str, Any]], bool]:
    """The built rule set's provenance records, else the shipped rules'; and whether they are the built."""
    from rules.manage import RULES_DIR, load_provenance, shipped_records

    records = None
    if settings.rules_data_dir is not None:
        try:
            records = load_provenance(settings.rules_data_dir)
        except (OSError, ValueError):
            raise ApiError(
                409, "rules_provenance_invalid", "the active rule set's provenance.json is unreadable"
            ) from None
    if records is not None:
        return records, True
    return shipped_records(settings.rules_dir or RULES_DIR), False


def _out(record: dict[str, Any]) -> RuleRecord:
    return RuleRecord(
        gid=int(record.get("gid") or 0),
        sid=int(record.get("sid") or 0),
        rev=int(record.get("rev") or 0),
        msg=str(record.get("msg", "")),
        action=str(record.get("action", "")),
        enabled=bool(record.get("enabled", False)),
        status=record.get("status", "invalid"),
        reason=str(record.get("reason", "")),
        source=str(record.get("source", "")),
        file=str(record.get("file", "")),
        location=str(record.get("url", "")),
    )


def _rules_dir(settings: Settings) -> Path:
    if settings.rules_dir is None:
        raise ApiError(
            409, "rules_not_configured", "rule management is not configured (serve --rules-dir DIR)"
        )
    return settings.rules_dir


@router.get(
    "",
    summary="rules with provenance and engine status",
    response_model=RulePage,
    **guarded(Permission.READ, 409),
)
def list_rules(settings: AppSettings, params: Annotated[RuleQuery, Query()]) -> RulePage:
    records, active = _records(settings)
    if params.unsupported:
        records = [r for r in records if r.get("status") in ("unsupported", "invalid")]
    if params.status is not None:
        records = [r for r in records if r.get("status") == params.status]
    if params.q:
        needle = params.q.lower()
        records = [r for r in records if needle in str(r.get("msg", "")).lower()]
    page = records[params.offset : params.offset + params.limit]
    return RulePage(
        items=[_out(r) for r in page],
        total=len(records),
        limit=params.limit,
        offset=params.offset,
        active=active,
    )


def _toggle(request: Request, settings: Settings, sid: int, body: Comment, enabled: bool) -> RuleToggled:
    from rules.manage import all_rules, set_enabled

    word = "enable" if enabled else "disable"
    set_audit(request, f"rules.{word}", f"rule:{sid}", body.comment[:200])
    rules_dir = _rules_dir(settings)
    with _RULES_LOCK:
        records, _active = _records(settings)
        known = all_rules(records)
        if sid not in known:
            raise not_found("rule")
        gid = int(known[sid].get("gid") or 1)
        try:
            changed = set_enabled(rules_dir, sid, enabled, gid=gid)
        except OSError as exc:
            raise ApiError(409, "rules_dir_unwritable", f"cannot edit {word}.conf: {exc.strerror}") from None
    return RuleToggled(
        gid=gid, sid=sid, enabled=enabled, changed=changed, note="applied by the next rules update"
    )


@router.post(
    "/{sid}/enable",
    summary="enable a rule by SID (enable.conf; applied by the next update)",
    response_model=RuleToggled,
    **guarded(Permission.POLICY_WRITE, 404, 409),
)
def enable_rule(request: Request, settings: AppSettings, sid: Sid, body: Comment) -> RuleToggled:
    return _toggle(request, settings, sid, body, True)


@router.post(
    "/{sid}/disable",
    summary="disable a rule by SID (disable.conf; applied by the next update)",
    response_model=RuleToggled,
    **guarded(Permission.POLICY_WRITE, 404, 409),
)
def disable_rule(request: Request, settings: AppSettings, sid: Sid, body: Comment) -> RuleToggled:
    return _toggle(request, settings, sid, body, False)


@router.post(
    "/update",
    summary="rebuild the active rule set with suricata-update, offline (never touches the network)",
    response_model=UpdateOut,
    **guarded(Permission.POLICY_WRITE, 409, 500),
)
def update_rules(request: Request, settings: AppSettings, body: UpdateRequest) -> UpdateOut:
    from rules.manage import update

    set_audit(request, "rules.update", "rules:active", body.comment[:200])
    rules_dir = _rules_dir(settings)
    if settings.rules_data_dir is None:
        raise ApiError(
            409, "rules_not_configured", "rule updates need a data directory (serve --rules-data-dir DIR)"
        )
    if not _RULES_LOCK.acquire(blocking=False):
        raise ApiError(409, "rules_busy", "another rule change is in progress; retry")
    try:
        result = update(rules_dir, settings.rules_data_dir, offline=True, timeout=UPDATE_TIMEOUT)
    except UserError as exc:
        raise ApiError(409, "rules_update_refused", str(exc)[:500]) from None
    finally:
        _RULES_LOCK.release()
    if result.returncode != 0:
        tail = result.log.strip().splitlines()[-1:] or [""]
        raise ApiError(
            500, "rules_update_failed", f"suricata-update failed (exit {result.returncode}): {tail[0][:300]}"
        )
    return UpdateOut(
        rules=result.rules,
        enabled=result.enabled,
        loaded=result.loaded,
        unsupported=result.unsupported,
        invalid=result.invalid,
        by_source=dict(sorted(result.by_source.items())),
    )
