"""``/api/v1/tokens``: list, create (the token is shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request, Response

from api.auth import Permission, Principal, TokenRecord, TokenStore
from api.deps import Db, get_principal, set_audit
from api.errors import not_found
from api.routes.common import guarded, resource_router
from api.schemas.common import Page, PageParams
from api.schemas.tokens import TokenCreate, TokenCreated, TokenInfo

router = resource_router("tokens", "/tokens")

TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="token id (12 hex digits)")]


def _info(record: TokenRecord) -> TokenInfo:
    return TokenInfo(
        id=record.id,
        name=record.name,
        role=record.role,
        created_at=record.created_at,
        created_by=record.created_by,
        revoked_at=record.revoked_at,
    )


@router.get(
    "",
    summary="list tokens (never their secrets)",
    response_model=Page[TokenInfo],
    **guarded(Permission.TOKENS_MANAGE),
)
def list_tokens(db: Db, params: Annotated[PageParams, Query()]) -> Page[TokenInfo]:
    records, total = TokenStore(db).list(params.limit, params.offset)
    return Page(items=[_info(r) for r in records], total=total, limit=params.limit, offset=params.offset)


@router.post(
    "",
    status_code=201,
    summary="create a token (shown once)",
    response_model=TokenCreated,
    **guarded(Permission.TOKENS_MANAGE),
)
def create_token(request: Request, db: Db, body: TokenCreate) -> TokenCreated:
    principal: Principal = get_principal(request)
    record, token = TokenStore(db).create(body.role, body.name, principal.actor)
    set_audit(request, "tokens.create", f"token:{record.id}", f"role={record.role} name={record.name}")
    return TokenCreated(token=token, **_info(record).model_dump())


@router.get(
    "/{token_id}", summary="one token", response_model=TokenInfo, **guarded(Permission.TOKENS_MANAGE, 404)
)
def get_token(db: Db, token_id: TokenId) -> TokenInfo:
    record = TokenStore(db).get(token_id)
    if record is None:
        raise not_found("token")
    return _info(record)


@router.delete(
    "/{token_id}",
    status_code=204,
    summary="revoke a token",
    response_class=Response,
    **guarded(Permission.TOKENS_MANAGE, 404),
)
def revoke_token(request: Request, db: Db, token_id: TokenId) -> Response:
    set_audit(request, "tokens.revoke", f"token:{token_id}")
    if not TokenStore(db).revoke(token_id):
        raise not_found("token")
    return Response(status_code=204)
