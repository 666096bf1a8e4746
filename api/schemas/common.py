"""Models shared by every resource: pagination, the page envelope, a comment body."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from api.settings import DEFAULT_PAGE_LIMIT, MAX_OFFSET, MAX_PAGE_LIMIT

ItemT = TypeVar("ItemT")

# Free-text filters are matched as literal substrings, never compiled as patterns (HOSTILE_INPUTS A9).
SEARCH_MAX = 200


class StrictModel(BaseModel):
    """A request model: unknown fields are refused with 422 (HOSTILE_INPUTS A5)."""

    model_config = ConfigDict(extra="forbid")


class PageParams(StrictModel):
    """``?limit=&offset=``: at most 1000 rows a page (A8); unknown query parameters are refused."""

    limit: int = Field(DEFAULT_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT, description="rows per page (1-1000)")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="rows to skip")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list: the rows, how many match in all, and the window asked for."""

    items: list[ItemT]
    total: int = Field(ge=0, description="rows matching the filters, all pages together")
    limit: int
    offset: int


class Comment(StrictModel):
    comment: str = Field(
        "", max_length=2000, description="why; kept in the audit log", examples=["known maintenance window"]
    )
