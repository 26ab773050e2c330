"""`page`/`limit` query parameters and the `pagination` object of every list."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from common.json_input import INT64_MAX, INT64_MIN

T = TypeVar("T")

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_PAGE = 1_000_000


def _within_64_bits(value: int) -> int:
    # Clamping must not turn a number no client could mean into an answer.
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("out of the 64-bit range")
    return value


class PageQuery(BaseModel):
    """Query parameters of a list endpoint; subclass it to add filters.

    Seed 004 states a maximum, not an error: `limit` above MAX_LIMIT is clamped to it
    and `page` below 1 to 1 (and above MAX_PAGE to it); the answer's `pagination`
    shows the values used. A `limit` below 1, a non-integer, or an integer beyond 64
    bits (as every integer query parameter, see `endpoints.parse_query`) is still a 400.
    """

    model_config = ConfigDict(extra="ignore")

    page: int = Field(
        default=1, description=f"1-based page number; below 1 counts as 1, at most {MAX_PAGE}"
    )
    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, description=f"items per page; above {MAX_LIMIT} counts as it"
    )

    @field_validator("page")
    @classmethod
    def _clamp_page(cls, value: int) -> int:
        return min(max(_within_64_bits(value), 1), MAX_PAGE)

    @field_validator("limit")
    @classmethod
    def _clamp_limit(cls, value: int) -> int:
        return min(_within_64_bits(value), MAX_LIMIT)

    @property
    def offset(self) -> int:
        """Rows to skip before this page."""
        return (self.page - 1) * self.limit


class Pagination(BaseModel):
    """Where a page sits in the whole list."""

    page: int
    limit: int
    total: int
    total_pages: int

    @classmethod
    def of(cls, query: PageQuery, total: int) -> Pagination:
        """The pagination object for `query` over `total` items."""
        pages = math.ceil(total / query.limit) if total else 0
        return cls(page=query.page, limit=query.limit, total=total, total_pages=pages)


async def fetch_page(
    session: AsyncSession, statement: SelectOfScalar[T], query: PageQuery
) -> tuple[Sequence[T], Pagination]:
    """Run `statement` (a sqlmodel `select(Model)`, already ordered) for one page,
    and count the whole result."""
    count_statement = select(func.count()).select_from(statement.order_by(None).subquery())
    total = (await session.exec(count_statement)).one()
    items = (await session.exec(statement.offset(query.offset).limit(query.limit))).all()
    return items, Pagination.of(query, int(total))
