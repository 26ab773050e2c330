"""Pooled PostgreSQL connections are checked on checkout with one round trip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from controlplane.db.checkout_ping import ping_on_checkout
from controlplane.db.engine import dispose_engine


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pool only (SQLite connections are local files)")
    made = create_async_engine(database_url, pool_size=1, max_overflow=0)
    ping_on_checkout(made)
    yield made
    await dispose_engine(made)


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_cut_by_the_server_in_the_pool_is_replaced_on_checkout(
    engine: AsyncEngine, database_url: str
) -> None:
    first = await _backend_pid(engine)
    admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()
    second = await _backend_pid(engine)  # no error: the dead one failed its ping
    assert second != first


async def test_the_check_is_one_statement_without_a_transaction(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend_pid(engine)
    dialect = engine.sync_engine.dialect

    def three_round_trips(_dbapi: Any) -> bool:
        raise AssertionError("pool_pre_ping's BEGIN, ping, ROLLBACK")

    monkeypatch.setattr(dialect, "do_ping", three_round_trips)
    begun: list[object] = []
    event.listen(engine.sync_engine, "begin", begun.append)
    assert await _backend_pid(engine) == first
    assert len(begun) == 1  # the caller's own
