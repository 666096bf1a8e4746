"""API tokens."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.auth import MAX_TOKEN_NAME
from api.roles import Role
from api.schemas.common import StrictModel


class TokenCreate(StrictModel):
    role: Role = Field(examples=["viewer"])
    name: str = Field(
        min_length=1, max_length=MAX_TOKEN_NAME, pattern=r"^[^\x00-\x1f\x7f]+$", examples=["soc-dashboard"]
    )


class TokenInfo(BaseModel):
    id: str = Field(examples=["3f9a0c1d2e4b"])
    name: str
    role: Role
    created_at: str
    created_by: str
    revoked_at: str | None = None


class TokenCreated(TokenInfo):
    token: str = Field(
        description="the bearer token; shown this once and never stored",
        examples=["zw_3f9a0c1d2e4b_" + "x" * 43],
    )
