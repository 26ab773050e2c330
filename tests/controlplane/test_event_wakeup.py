"""Events committed by one process wake the readers of another through NOTIFY (real
PostgreSQL), with no poll: the payload is the event id, and after the listening
connection was lost the reader re-reads from its own cursor, missing nothing."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.db.engine import Database
from controlplane.db.notify import PostgresNotifier, asyncpg_connect_args
from controlplane.events.bus import Event
from controlplane.events.feed import EventFeed
from controlplane.events.store import EventStore
from controlplane.events.wakeup import NotifiedWakeup
from tests.controlplane.event_feed_support import NO_POLL, received, running_feed
from tests.controlplane.test_notify import TERMINATE_OTHER_BACKENDS

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def _listening(database: Database, reconnect_after: float = 0.05) -> PostgresNotifier:
    connect_args = asyncpg_connect_args(database.engine)
    return PostgresNotifier(connect_args, reconnect_initial=reconnect_after)


async def test_a_commit_elsewhere_wakes_the_reader_with_its_event_id(database: Database) -> None:
    notifier = await _listening(database)
    writer = EventStore(database, notifier=notifier)  # another process's store
    reader = EventStore(database)
    wakeup = NotifiedWakeup(reader.horizon, notifier, interval=NO_POLL)
    await notifier.start()
    polling = asyncio.create_task(wakeup.run())
    try:
        await asyncio.wait_for(notifier.connected.wait(), 5)
        async with database.transaction() as session:
            cursor = await writer.record(session, Event("test"))
            await asyncio.sleep(0.05)
            assert wakeup.known < cursor  # not before the commit
        await asyncio.wait_for(wakeup.wait_beyond(cursor - 1), 2)
        assert wakeup.known == cursor
    finally:
        polling.cancel()
        await notifier.close()


async def test_a_follower_misses_nothing_across_a_lost_listening_connection(
    database: Database,
) -> None:
    async with (
        running_feed(database) as (a, _),
        # B reconnects no sooner than 0.5 s (back-off with jitter): A's next events
        # commit while B listens to nothing.
        running_feed(database, reconnect_after=1.0) as (b, b_notifier),
    ):
        subscription = b._bus.subscribe(maxsize=1000)
        try:
            written = [await _record(a, n) for n in range(5)]
            assert await received(subscription, 5) == written
            reconnected = asyncio.Event()
            b_notifier.on_reconnected(reconnected.set)
            # Cut every listening connection; what commits meanwhile is never notified
            # to B.
            async with database.transaction() as session:
                await session.exec(TERMINATE_OTHER_BACKENDS)
            written = [await _record(a, n) for n in range(5, 10)]
            assert not reconnected.is_set()
            await asyncio.wait_for(reconnected.wait(), 10)
            assert await received(subscription, 5) == written
            assert subscription.get_nowait() is None  # nothing twice
        finally:
            subscription.close()


async def _record(feed: EventFeed, number: int) -> int:
    async with feed.store.database.transaction() as session:
        return await feed.store.record(session, Event("test", data={"n": number}))
