"""The settled horizon: event writers are not serialised, yet a reader never sees a
cursor below one it has seen. Unit tests of the pure step, then the feed against real
PostgreSQL with transactions committing in the worst orders: a lower id committing
last, a lower id whose transaction got its xid *after* the higher one's (above the
snapshot's xmax: not in its xip list), a rolled-back id, and unrelated long
transactions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, text
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.db.engine import Database, create_engine
from controlplane.events.bus import Event, Subscription
from controlplane.events.feed import EventFeed
from controlplane.events.horizon import Gap, Horizon, Look, Snapshot, step
from tests.controlplane.event_feed_support import received, running_feed


def _look(snapshot: str, ids: list[int], newest: int, next_xid: int | None = None) -> Look:
    return Look(Snapshot.parse(snapshot), ids, newest, next_xid)


def test_consecutive_ids_move_the_horizon_and_a_gap_stops_it() -> None:
    assert step(0, None, _look("100:100:", [1, 2, 3], 3)) == (3, None)
    horizon, gap = step(3, None, _look("100:105:101,103", [4, 6], 6, next_xid=107))
    assert horizon == 4
    assert gap == Gap(6, frozenset({101, 103}), 105, 107)


def test_a_gap_settles_when_every_transaction_running_at_its_snapshot_has_ended() -> None:
    gap = Gap(6, frozenset({101, 103}), 105, 107)
    # 103 still running: nothing moves, even with 6 visible.
    assert step(4, gap, _look("101:108:103", [6], 6)) == (4, gap)
    # 106 got its xid before the snapshot but above its xmax: it may hold id 5.
    assert step(4, gap, _look("104:108:106", [6], 6)) == (4, gap)
    # All ended (5 rolled back): the horizon passes the gap, and walks on from 6.
    assert step(4, gap, _look("108:110:", [6, 7], 7)) == (7, None)


def test_a_gap_filled_by_its_commit_needs_no_waiting() -> None:
    gap = Gap(6, frozenset({101}), 105, 107)
    assert step(4, gap, _look("101:110:101", [5, 6], 6)) == (6, None)


def test_the_reader_draws_no_xid_without_a_gap() -> None:
    # The statement draws one only when it sees a gap; without it no gap is recorded
    # (it could not be bounded) and the next look decides.
    assert step(4, None, _look("100:105:", [6], 6)) == (4, None)


def test_committed_ids_next_to_the_horizon_move_it_without_a_look() -> None:
    horizon = Horizon(Database(create_engine("postgresql+asyncpg://u:p@127.0.0.1:9/x")))
    assert not horizon.committed(2)  # 1 may still be in flight, or rolled back
    assert horizon.value == 0
    assert horizon.committed(1)  # then 2 as well
    assert horizon.value == 2
    assert horizon.committed(3)
    assert horizon.value == 3


@pytest.fixture
async def feed(database: Database) -> AsyncIterator[EventFeed]:
    async with running_feed(database) as (built, _notifier):
        yield built


async def _open(database: Database) -> AsyncSession:
    session = database.session()
    await session.begin()
    return session


async def _record(feed: EventFeed, session: AsyncSession, name: str) -> int:
    async with asyncio.timeout(5):  # writers are not serialised: none waits for another
        return await feed.store.record(session, Event("test", data={"name": name}))


async def _end(session: AsyncSession, *, commit: bool = True) -> None:
    await (session.commit() if commit else session.rollback())
    await session.close()


async def _nothing_for(subscription: Subscription, seconds: float) -> None:
    await asyncio.sleep(seconds)
    assert subscription.get_nowait() is None


pg = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pg
async def test_a_lower_id_committing_last_is_delivered_first(
    database: Database, feed: EventFeed
) -> None:
    subscription = feed._bus.subscribe(maxsize=100)
    low = await _open(database)
    high = await _open(database)
    try:
        first = await _record(feed, low, "low")
        second = await _record(feed, high, "high")
        assert first < second
        await _end(high)
        await _nothing_for(subscription, 0.5)  # not the higher id before the lower
        await _end(low)
        assert await received(subscription, 2, 5) == [first, second]
    finally:
        for session in (low, high):
            await session.close()
        subscription.close()


@pg
async def test_a_lower_id_from_a_transaction_younger_than_the_snapshots_xmax_is_waited_for(
    database: Database, feed: EventFeed
) -> None:
    """The higher id's transaction got its xid first, the lower id's second: when the
    higher commits, the lower's xid is above the newest completed one, so no snapshot
    lists it as running (xip) until it ends."""
    subscription = feed._bus.subscribe(maxsize=100)
    older = await _open(database)
    younger = await _open(database)
    try:
        await older.exec(select(func.pg_current_xact_id()))
        lower = await _record(feed, younger, "younger")
        higher = await _record(feed, older, "older")
        assert lower < higher
        await _end(older)
        await _nothing_for(subscription, 0.5)
        await _end(younger)
        assert await received(subscription, 2, 5) == [lower, higher]
    finally:
        for session in (older, younger):
            await session.close()
        subscription.close()


@pg
async def test_a_rolled_back_id_is_passed_promptly_despite_a_long_reader(
    database: Database, feed: EventFeed
) -> None:
    """A rollback notifies nobody: the gap retries find it ended. A long-open
    transaction holding the database's xmin (a snapshot, no xid) delays nothing."""
    subscription = feed._bus.subscribe(maxsize=100)
    long_reader = await _open(database)
    connection = await long_reader.connection()
    await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    await long_reader.exec(select(func.now()))
    doomed = await _open(database)
    kept = await _open(database)
    try:
        await _record(feed, doomed, "rolled back")
        survivor = await _record(feed, kept, "kept")
        await _end(kept)
        await _nothing_for(subscription, 0.5)
        await _end(doomed, commit=False)
        ended = time.monotonic()
        assert await received(subscription, 1, 5) == [survivor]
        assert time.monotonic() - ended < 1.0
    finally:
        for session in (long_reader, doomed, kept):
            await session.close()
        subscription.close()


@pg
async def test_a_long_writer_elsewhere_does_not_hold_back_ids_that_commit(
    database: Database, feed: EventFeed
) -> None:
    """An unrelated transaction with an xid, open throughout: the gap below a new
    event fills when the lower id commits, with no waiting for it."""
    subscription = feed._bus.subscribe(maxsize=100)
    long_writer = await _open(database)
    await long_writer.exec(select(func.pg_current_xact_id()))
    low = await _open(database)
    high = await _open(database)
    try:
        first = await _record(feed, low, "low")
        second = await _record(feed, high, "high")
        await _end(high)
        await _nothing_for(subscription, 0.3)
        await _end(low)
        assert await received(subscription, 2, 1.0) == [first, second]
        third = await _record_alone(feed)
        assert await received(subscription, 1, 1.0) == [third]
    finally:
        for session in (long_writer, low, high):
            await session.close()
        subscription.close()


async def _record_alone(feed: EventFeed) -> int:
    async with feed.store.database.transaction() as session:
        return await _record(feed, session, "alone")


async def test_readers_starting_together_share_one_look(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    horizon = Horizon(database)
    await horizon.start()
    looks = 0
    advance = horizon.advance

    async def counted() -> int:
        nonlocal looks
        looks += 1
        return await advance()

    monkeypatch.setattr(horizon, "advance", counted)
    starts = await asyncio.gather(*(horizon.start() for _ in range(20)))
    assert looks == 1
    assert len(set(starts)) == 1
