"""Rows that belong to the caller (SSH keys, webhooks, watched repos): one page of them, oldest
first, and deleting one named by the path's `{id}`. Another account's row is
answered as if it did not exist."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TypeVar

from aiohttp import web
from sqlalchemy import delete, func
from sqlmodel import SQLModel, col, select

from controlplane.api.context import current_user, database, path_uuid
from controlplane.api.errors import Conflict, NotFound
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.db.tables import Repo, SshKey
from controlplane.db.tables.webhooks import Webhook

OwnedRow = TypeVar("OwnedRow", SshKey, Webhook, Repo)


async def page_of_own(
    request: web.Request, table: type[OwnedRow], query: PageQuery
) -> tuple[Sequence[OwnedRow], Pagination]:
    """One page of the caller's rows of `table`, oldest first."""
    statement = (
        select(table)
        .where(col(table.user_id) == current_user(request).id)
        .order_by(col(table.created_at), col(table.id))
    )
    async with database(request).session() as session:
        return await fetch_page(session, statement, query)


async def add_own(
    request: web.Request,
    row: OwnedRow,
    limit: int,
    noun: str,
    along: Sequence[SQLModel] = (),
) -> None:
    """Insert `row` unless its owner has `limit` rows of its table already (409
    `too_many_<noun>`); the count and the insert share one transaction, and so do the
    rows `along` (what must exist from the moment `row` does)."""
    table = type(row)
    async with database(request).transaction() as session:
        count = await session.scalar(
            select(func.count()).select_from(table).where(col(table.user_id) == row.user_id)
        )
        if (count or 0) >= limit:
            raise Conflict(f"at most {limit} {noun} per account", code=f"too_many_{noun}")
        session.add(row)
        session.add_all(along)


async def delete_own(request: web.Request, table: type[OwnedRow], missing: NotFound) -> uuid.UUID:
    """Delete the caller's row of `table` named by the path; raise `missing` when the
    caller has no such row. Returns the caller's id."""
    owner = current_user(request).id
    statement = delete(table).where(
        col(table.id) == path_uuid(request), col(table.user_id) == owner
    )
    async with database(request).transaction() as session:
        deleted = await session.exec(statement)
        if deleted.rowcount != 1:
            raise missing
    return owner
