"""SQLite statements take one hop to the driver's thread, and no hop when idle."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from controlplane.db.engine import Database, create_engine
from controlplane.db.sqlite_driver import OneHopConnection, one_hop_connect


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'hops.db'}"))
    async with database.transaction() as session:
        await session.exec(text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    try:
        yield database
    finally:
        await database.close()


class _Hops:
    """Counts the calls queued to a connection's worker thread (the thread keeps
    reading the original queue; the connection puts through this proxy)."""

    def __init__(self, driver: OneHopConnection) -> None:
        self.count = 0
        self._queue = driver._tx
        driver._tx = self  # type: ignore[assignment]

    def put_nowait(self, item: Any) -> None:
        self.count += 1
        self._queue.put_nowait(item)


async def test_a_statement_or_a_commit_is_one_hop_and_an_idle_checkin_none(
    db: Database,
) -> None:
    async with db.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        hops = _Hops(raw.driver_connection)  # type: ignore[arg-type]
        rows = (await connection.execute(text("SELECT 1, 2"))).all()
        assert rows == [(1, 2)]
        assert hops.count == 1  # aiosqlite alone: cursor, execute, fetchall, close
        await connection.execute(text("INSERT INTO t VALUES (1)"))
        await connection.commit()
        assert hops.count == 3
        await connection.rollback()  # nothing open: no hop
    assert hops.count == 3  # nor for the pool's reset on checkin


async def test_a_rollback_is_not_skipped_while_a_statement_is_queued(tmp_path: Path) -> None:
    # A caller cancelled while its INSERT waits behind other work on the worker
    # thread: the INSERT still runs there and opens a transaction, so the pool's
    # rollback, called meanwhile, must not be skipped for "no transaction open".
    driver = one_hop_connect(str(tmp_path / "queued.db"))
    await driver
    try:
        await driver.cursor().execute("CREATE TABLE t (n INTEGER)")
        release = threading.Event()
        driver._tx.put_nowait((None, release.wait))
        insert = asyncio.create_task(driver.cursor().execute("INSERT INTO t VALUES (1)"))
        await asyncio.sleep(0.01)
        rollback = asyncio.create_task(driver.rollback())
        await asyncio.sleep(0.01)
        release.set()
        await insert
        await rollback
        assert not driver._conn.in_transaction
    finally:
        await driver.close()
