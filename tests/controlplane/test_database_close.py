"""Closing the database leaves no driver thread running behind it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from common.cancellation import cancel_and_wait
from controlplane.db.engine import Database, create_engine


def _sqlite_workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def test_close_waits_for_a_connection_cancelled_while_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A background loop cancelled at shutdown while its connection is being opened
    # leaves aiosqlite's worker thread running sqlite3.connect. If close() returned
    # before that thread finished, it would report to an event loop that the caller
    # may already have closed (the error is raised in the thread, and lost).
    opening, release = threading.Event(), threading.Event()
    real_connect = sqlite3.connect

    def slow_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opening.set()
        release.wait(10)
        connection: sqlite3.Connection = real_connect(*args, **kwargs)
        return connection

    monkeypatch.setattr(sqlite3, "connect", slow_connect)
    before = _sqlite_workers()
    db = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'close.db'}"))

    async def use() -> None:
        async with db.engine.connect():
            pass

    user = asyncio.create_task(use())
    assert await asyncio.to_thread(opening.wait, 5)
    await cancel_and_wait(user)

    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0.2)
    assert not closing.done(), "close() returned while the driver was still opening"
    release.set()
    await asyncio.wait_for(closing, 10)
    assert _sqlite_workers() - before == set()


async def test_close_is_prompt_after_ordinary_use(tmp_path: Path) -> None:
    db = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"))
    before = _sqlite_workers()
    async with db.transaction() as session:
        await session.connection()
    await asyncio.wait_for(db.close(), 2)
    assert _sqlite_workers() - before == set()
