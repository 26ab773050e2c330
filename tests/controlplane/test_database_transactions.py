"""Transactions on embedded SQLite take turns within the process: a writer waits for
the one before it however long that one takes, instead of polling SQLite's lock and
failing with "database is locked" once busy_timeout has passed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from controlplane.db import engine as engine_module
from controlplane.db.engine import Database, create_engine


async def test_a_writer_waits_for_a_slow_one_past_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    db = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}"))
    async with db.transaction() as session:
        await session.exec(text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    wrote = asyncio.Event()

    async def slow() -> None:
        async with db.transaction() as session:
            await session.exec(text("INSERT INTO t VALUES (1)"))  # type: ignore[call-overload]
            wrote.set()
            await asyncio.sleep(0.4)  # e.g. a body that awaits another service

    async def quick() -> None:
        await wrote.wait()
        async with db.transaction() as session:
            await session.exec(text("INSERT INTO t VALUES (2)"))  # type: ignore[call-overload]

    await asyncio.gather(slow(), quick(), *(quick() for _ in range(5)))
    async with db.session() as session:
        count = (await session.exec(text("SELECT count(*) FROM t"))).one()  # type: ignore[call-overload]
    assert tuple(count) == (7,)
    await db.close()


async def test_a_task_started_in_a_transaction_waits_its_turn_once_that_one_ended(
    tmp_path: Path,
) -> None:
    """A task started inside a transaction shares its turn while it lasts, and only
    then: outliving it, the task's own transactions queue like everyone's."""
    db = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'inherit.db'}"))
    async with db.transaction() as session:
        await session.exec(text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    go = asyncio.Event()
    order: list[str] = []

    async def outliving() -> None:
        await go.wait()
        async with db.transaction() as session:
            order.append("child")
            await session.exec(text("INSERT INTO t VALUES (1)"))  # type: ignore[call-overload]

    async with db.transaction():
        child = asyncio.create_task(outliving())
    other_started = asyncio.Event()

    async def other() -> None:
        async with db.transaction() as session:
            other_started.set()
            order.append("other")
            go.set()
            await asyncio.sleep(0.05)  # the child must not write meanwhile
            order.append("other done")
            await session.exec(text("INSERT INTO t VALUES (2)"))  # type: ignore[call-overload]

    await asyncio.gather(other(), child)
    assert order == ["other", "other done", "child"]
    await db.close()
