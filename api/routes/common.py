"""What every resource router shares: the prefix, the documented error answers, the permission tag."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from api.auth import Permission, Require
from api.errors import error_responses
from api.settings import API_PREFIX

# Errors any authenticated route can answer with; routes add 404/409/... where they can happen.
COMMON_ERRORS = error_responses(400, 401, 403, 413, 415, 422, 429)


def resource_router(tag: str, prefix: str = "") -> APIRouter:
    return APIRouter(prefix=f"{API_PREFIX}{prefix}", tags=[tag], responses=COMMON_ERRORS)


def guarded(
    permission: Permission, *more_errors: int, responses: dict[int | str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Keyword arguments for a route decorator: the permission check, its OpenAPI mark, extra answers."""
    documented = {**error_responses(*more_errors), **(responses or {})}
    return {
        "dependencies": [Depends(Require(permission))],
        "openapi_extra": {"x-permission": str(permission)},
        "responses": documented or None,
    }
