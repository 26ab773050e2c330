"""A running event feed on real PostgreSQL, woken by NOTIFY only, and what its
subscribers receive: shared by the wake-up and horizon tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from controlplane.db.engine import Database
from controlplane.db.notify import PostgresNotifier, asyncpg_connect_args
from controlplane.events.bus import EventBus, Subscription
from controlplane.events.feed import EventFeed

NO_POLL = 3600.0


@contextlib.asynccontextmanager
async def running_feed(
    database: Database, reconnect_after: float = 0.05
) -> AsyncIterator[tuple[EventFeed, PostgresNotifier]]:
    """A feed with its own listening connection (re-opened `reconnect_after` seconds
    after a loss, with jitter); only NOTIFY, reconnects and gap retries wake it."""
    notifier = PostgresNotifier(
        asyncpg_connect_args(database.engine), reconnect_initial=reconnect_after
    )
    feed = EventFeed(database, EventBus(), notifier)
    feed.wakeup._interval = NO_POLL
    await notifier.start()
    running: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(notifier.connected.wait(), 5)
        await feed.start()
        running = asyncio.create_task(feed.run())
        yield feed, notifier
    finally:
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await notifier.close()


async def received(subscription: Subscription, count: int, within: float = 5.0) -> list[int]:
    """The cursors of the next `count` events, each serialised once by the feed."""
    cursors: list[int] = []
    async with asyncio.timeout(within):
        while len(cursors) < count:
            event = await subscription.get()
            assert event is not None
            assert event.cursor is not None
            assert event.wire is not None
            cursors.append(event.cursor)
    return cursors
