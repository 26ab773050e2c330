"""LISTEN/NOTIFY between processes (real PostgreSQL) and its in-process stand-in."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, text
from sqlmodel import select

from controlplane.db.engine import Database, create_engine
from controlplane.db.notify import (
    LocalNotifier,
    Notifier,
    PayloadTooLarge,
    PostgresNotifier,
    asyncpg_connect_args,
    notifier_for,
)

# Ends every other connection to the test's database (the notifier's among them), as a
# restarted server or a cut network would.
TERMINATE_OTHER_BACKENDS = (
    select(func.pg_terminate_backend(text("pid")))
    .select_from(text("pg_stat_activity"))
    .where(text("datname = current_database() AND pid <> pg_backend_pid()"))
)


async def _notify_then_roll_back(database: Database, notifier: Notifier) -> None:
    async with database.transaction() as session:
        await notifier.notify(session, "encedeus_test", "rolled-back")
        raise RuntimeError("abort")


async def _received(queue: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(queue.get(), 5)


async def test_a_notification_reaches_every_listener_after_commit_only(database_url: str) -> None:
    database = Database(create_engine(database_url))
    one, two = notifier_for(database.engine), notifier_for(database.engine)
    got_one: asyncio.Queue[str] = asyncio.Queue()
    got_two: asyncio.Queue[str] = asyncio.Queue()
    one.listen("encedeus_test", got_one.put_nowait)
    two.listen("encedeus_test", got_two.put_nowait)
    if isinstance(one, LocalNotifier):
        two = one  # one process: every component shares the one notifier
        got_two = got_one
    await one.start()
    await two.start()
    try:
        for notifier in {id(one): one, id(two): two}.values():
            if isinstance(notifier, PostgresNotifier):
                await asyncio.wait_for(notifier.connected.wait(), 5)
        with pytest.raises(RuntimeError):
            await _notify_then_roll_back(database, one)
        async with database.transaction() as session:
            await one.notify(session, "encedeus_test", "id-1")
        assert await _received(got_one) == "id-1"
        if got_two is not got_one:
            assert await _received(got_two) == "id-1"
        two.notify_soon("encedeus_test", "id-2")
        assert await _received(got_one) == "id-2"
        assert got_one.empty()  # the rolled-back one never came
    finally:
        await one.close()
        await two.close()
        await database.close()


async def test_a_listener_without_echo_misses_only_its_own_processs_notify_soon(
    database_url: str,
) -> None:
    database = Database(create_engine(database_url))
    one = notifier_for(database.engine)
    # One process on SQLite: no other sender.
    two = None if isinstance(one, LocalNotifier) else notifier_for(database.engine)
    quiet: asyncio.Queue[str] = asyncio.Queue()
    loud: asyncio.Queue[str] = asyncio.Queue()
    one.listen("encedeus_test", quiet.put_nowait, echo=False)
    one.listen("encedeus_test", loud.put_nowait)
    await one.start()
    if two is not None:
        await two.start()
    try:
        for notifier in (one, two):
            if isinstance(notifier, PostgresNotifier):
                await asyncio.wait_for(notifier.connected.wait(), 5)
        one.notify_soon("encedeus_test", "own")
        assert await _received(loud) == "own"
        async with database.transaction() as session:  # sent from a pooled connection
            await one.notify(session, "encedeus_test", "committed")
        assert await _received(quiet) == "committed"
        if two is not None:
            two.notify_soon("encedeus_test", "another process")
            assert await _received(quiet) == "another process"
        assert quiet.empty()
    finally:
        await one.close()
        if two is not None:
            await two.close()
        await database.close()


def test_payloads_of_8000_bytes_are_refused_before_sending() -> None:
    with pytest.raises(PayloadTooLarge):
        LocalNotifier().notify_soon("encedeus_test", "x" * 8000)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_lost_connection_reconnects_and_says_so(database_url: str) -> None:
    database = Database(create_engine(database_url))
    notifier = PostgresNotifier(asyncpg_connect_args(database.engine), reconnect_initial=0.05)
    got: asyncio.Queue[str] = asyncio.Queue()
    reconnected = asyncio.Event()
    notifier.listen("encedeus_test", got.put_nowait)
    notifier.on_reconnected(reconnected.set)
    await notifier.start()
    try:
        await asyncio.wait_for(notifier.connected.wait(), 5)
        async with database.transaction() as session:
            # Every LISTENing backend of this database but ours: the notifier's.
            await session.exec(TERMINATE_OTHER_BACKENDS)
        await asyncio.wait_for(reconnected.wait(), 10)
        notifier.notify_soon("encedeus_test", "after")
        assert await _received(got) == "after"
    finally:
        await notifier.close()
        await database.close()
