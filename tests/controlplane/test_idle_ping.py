"""Pooled PostgreSQL connections are pinged on checkout only after sitting idle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from controlplane.db.engine import dispose_engine
from controlplane.db.idle_ping import ping_when_idle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pool only (SQLite connections are local files)")
    made = create_async_engine(database_url, pool_size=1, max_overflow=0)
    yield made
    await dispose_engine(made)


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_used_moments_ago_goes_out_without_a_ping(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    pings: list[object] = []
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping

    def counted(dbapi: Any) -> bool:
        pings.append(dbapi)
        return ping(dbapi)

    monkeypatch.setattr(dialect, "do_ping", counted)
    ping_when_idle(engine, idle_seconds=1.0, clock=clock)

    first = await _backend_pid(engine)  # a new connection: not pinged
    clock.now += 0.5
    assert await _backend_pid(engine) == first
    assert pings == []
    clock.now += 1.5
    assert await _backend_pid(engine) == first
    assert len(pings) == 1


async def test_an_idle_connection_cut_by_the_server_is_replaced_on_checkout(
    engine: AsyncEngine, database_url: str
) -> None:
    clock = Clock()
    ping_when_idle(engine, idle_seconds=1.0, clock=clock)
    first = await _backend_pid(engine)
    dsn = database_url.replace("+asyncpg", "")
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
    finally:
        await admin.close()
    clock.now += 5
    second = await _backend_pid(engine)  # no error: the dead one failed its ping
    assert second != first
