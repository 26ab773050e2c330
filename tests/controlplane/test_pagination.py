"""`fetch_page` on both engines: one page of an ordered statement, the whole count,
filters kept and ordering dropped in the count; and the `pagination` arithmetic."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from controlplane.api.pagination import MAX_LIMIT, PageQuery, Pagination, fetch_page
from controlplane.db.engine import Database
from controlplane.db.tables import Node

NAMES = [f"node-{i:02d}" for i in range(25)]


async def _add_nodes(database: Database, names: list[str]) -> None:
    async with database.transaction() as session:
        session.add_all(Node(name=name) for name in reversed(names))


async def _page(
    database: Database, page: int, limit: int, *, prefix: str = "", descending: bool = False
) -> tuple[list[str], Pagination]:
    order = col(Node.name).desc() if descending else col(Node.name)
    statement = select(Node).where(col(Node.name).startswith(prefix)).order_by(order)
    async with database.session() as session:
        rows, pagination = await fetch_page(session, statement, PageQuery(page=page, limit=limit))
    return [row.name for row in rows], pagination


async def test_pages_follow_the_statement_order_and_count_everything(database: Database) -> None:
    await _add_nodes(database, NAMES)
    names, pagination = await _page(database, 1, 10)
    assert names == NAMES[:10]
    assert pagination == Pagination(page=1, limit=10, total=25, total_pages=3)
    assert (await _page(database, 2, 10))[0] == NAMES[10:20]
    names, pagination = await _page(database, 3, 10)
    assert names == NAMES[20:]
    assert pagination.total_pages == 3
    assert (await _page(database, 1, 10, descending=True))[0] == NAMES[::-1][:10]


async def test_a_page_past_the_end_is_empty_with_the_true_total(database: Database) -> None:
    await _add_nodes(database, NAMES)
    names, pagination = await _page(database, 4, 10)
    assert names == []
    assert (pagination.page, pagination.total, pagination.total_pages) == (4, 25, 3)


async def test_filters_apply_to_the_count(database: Database) -> None:
    await _add_nodes(database, NAMES)
    names, pagination = await _page(database, 1, 4, prefix="node-1")
    assert names == NAMES[10:14]
    assert (pagination.total, pagination.total_pages) == (10, 3)


async def test_an_empty_table_has_no_pages(database: Database) -> None:
    names, pagination = await _page(database, 1, 10)
    assert names == []
    assert pagination == Pagination(page=1, limit=10, total=0, total_pages=0)


def test_pagination_arithmetic_and_limits() -> None:
    assert Pagination.of(PageQuery(page=2, limit=7), 14).total_pages == 2
    assert Pagination.of(PageQuery(page=1, limit=7), 15).total_pages == 3
    assert PageQuery(page=3, limit=20).offset == 40
    assert PageQuery().limit == 10
    # Seed 004 states a maximum: out-of-range values are clamped, not refused...
    assert PageQuery.model_validate({"limit": MAX_LIMIT + 1}).limit == MAX_LIMIT
    assert PageQuery.model_validate({"page": 0}).page == 1
    # ...except those no client could mean.
    for bad in ({"limit": 0}, {"limit": 2**64}, {"page": -(2**64)}):
        with pytest.raises(ValidationError):
            PageQuery.model_validate(bad)
