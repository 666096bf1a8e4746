"""``GET /api/v1/me``: who the caller is — the token's role, name, id and what that role may do.

The dashboard reads it once after sign-in and hides the actions the role cannot use (the API still
decides every call: hiding a button is a courtesy, not a control).
"""

from __future__ import annotations

from fastapi import Request

from api.auth import ROLE_PERMISSIONS, TOKEN_PREFIX, Permission, Principal
from api.deps import get_principal
from api.routes.common import guarded, resource_router
from api.schemas.system import Me

router = resource_router("system")


@router.get(
    "/me",
    summary="the caller: role, token name and id, permissions",
    response_model=Me,
    **guarded(Permission.READ),
)
def me(request: Request) -> Me:
    principal: Principal = get_principal(request)
    granted = ROLE_PERMISSIONS[principal.role]
    return Me(
        role=principal.role,
        token_id=principal.token_id,
        token_prefix=f"{TOKEN_PREFIX}_{principal.token_id}_",
        token_name=principal.name,
        permissions=sorted(str(p) for p in granted),
    )
