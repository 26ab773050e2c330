"""The durable event log: cursors become visible in order even when transactions
commit concurrently and out of order; expired cursors; pruning keeps what webhook
receivers still need."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import select

from controlplane.db.engine import Database, create_engine
from controlplane.db.migrate import upgrade_database
from controlplane.db.tables.events import MailMessage, WebhookCursor, WebhookDelivery
from controlplane.db.types import utcnow
from controlplane.events.bus import Event
from controlplane.events.outbox import prune_finished
from controlplane.events.store import CursorExpired, EventStore, Retention

WRITERS = 40


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    await upgrade_database(database_url)
    # Enough pooled connections on PostgreSQL for every writer to be in flight at once.
    pooled = {"pool_size": WRITERS + 5} if database_url.startswith("postgresql") else {}
    db = Database(create_engine(database_url, **pooled))
    try:
        yield db
    finally:
        await db.close()


async def test_a_reader_following_the_cursor_never_misses_a_concurrent_commit(
    database: Database,
) -> None:
    """Many transactions record an event and commit after a random delay; a reader that
    always resumes after the highest cursor it saw still sees every event."""
    store = EventStore(database)
    rng = random.Random(7)
    committed: list[int] = []

    async def writer(number: int) -> None:
        await asyncio.sleep(rng.uniform(0, 0.05))
        async with database.transaction() as session:
            cursor = await store.record(session, Event("test", data={"n": number}))
            await asyncio.sleep(rng.uniform(0, 0.05))  # commit late, out of order
        committed.append(cursor)

    seen: list[int] = []

    async def reader(done: asyncio.Event) -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            await store.horizon.advance()
            for event in await store.read_after(cursor):
                assert event.cursor is not None
                seen.append(event.cursor)
                cursor = event.cursor
            # Once every writer is done, until the horizon has passed them all (it
            # waits for transactions that were running when it saw a gap).
            if finished and cursor >= max(committed):
                return
            await asyncio.sleep(0.002)

    done = asyncio.Event()
    following = asyncio.create_task(reader(done))
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    done.set()
    await asyncio.wait_for(following, 10)
    assert seen == sorted(seen)
    assert sorted(seen) == sorted(committed)
    assert len(seen) == WRITERS


async def caught_up(store: EventStore) -> int:
    """Advance `store`'s horizon (the feed's work, in a process) to the newest event."""
    await store.start()
    while await store.horizon.advance() < await store.latest():
        await asyncio.sleep(0.01)
    return store.horizon.value


async def test_a_rolled_back_event_is_never_seen(database: Database) -> None:
    store = EventStore(database)

    async def failing_change() -> None:
        async with database.transaction() as session:
            await store.record(session, Event("test"))
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert await caught_up(store) == 0
    assert await store.read_after(0) == []


async def test_expired_cursors_and_pruning_keep_what_receivers_need(database: Database) -> None:
    store = EventStore(database)
    old = utcnow() - timedelta(days=2)
    await store.record_now([Event("test", data={"n": n}, timestamp=old) for n in range(10)])
    await caught_up(store)
    cursors = [e.cursor or 0 for e in await store.read_after(0)]
    assert cursors == list(range(cursors[0], cursors[0] + 10))
    async with database.transaction() as session:
        session.add(WebhookCursor(endpoint="operator", cursor=cursors[4]))
    # Only up to the receiver's cursor: events 6..10 are still owed to it.
    assert await store.prune(Retention(3600)) == 5
    await store.check_cursor(cursors[4])  # the newest pruned one: nothing lost after it
    with pytest.raises(CursorExpired):
        await store.check_cursor(cursors[3])
    await store.check_cursor(0)  # "everything retained"
    async with database.transaction() as session:
        row = await session.get(WebhookCursor, "operator")
        assert row is not None
        row.cursor = cursors[9]
    # The newest row always stays: it tells an expired cursor from a valid one.
    assert await store.prune(Retention(3600)) == 4
    assert [e.cursor for e in await store.read_after(0)] == [cursors[9]]


async def test_finished_deliveries_and_mails_are_pruned_pending_ones_stay(
    database: Database,
) -> None:
    old = utcnow() - timedelta(days=2)
    async with database.transaction() as session:
        for status in ("delivered", "dead", "pending"):
            session.add(WebhookDelivery(endpoint="operator", event_id=1, event_key="1",
                                        event_type="test", body="{}", status=status,
                                        created_at=old))  # fmt: skip
        for status in ("sent", "pending"):
            session.add(MailMessage(to="a@example.com", subject="s", body="b", status=status,
                                    created_at=old))  # fmt: skip
    assert await prune_finished(database, utcnow() - timedelta(hours=24)) == 3
    async with database.session() as session:
        left = (await session.exec(select(WebhookDelivery.status))).all()
        mails = (await session.exec(select(MailMessage.status))).all()
    assert list(left) == ["pending"]
    assert list(mails) == ["pending"]


async def test_a_new_follower_gets_its_cursor_on_one_connection(database_url: str) -> None:
    """Many followers start at once (a webhook per account): each may hold only the one
    connection its transaction has, or the pool runs dry and every one of them waits."""
    await upgrade_database(database_url)
    single = Database(create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=2))
    try:
        store = EventStore(single)
        await store.record_now([Event("test", owner_id="o")])
        newest = await store.latest()
        async with asyncio.timeout(10):
            assert await store.follower_cursor("fresh-follower") == newest
    finally:
        await single.close()
