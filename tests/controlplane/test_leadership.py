"""The leader lease on real PostgreSQL: one leader at a time, takeover when its
connection ends, and the fencing epoch that refuses a deposed leader's writes."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, text
from sqlmodel import select

from controlplane.agents import AgentPool
from controlplane.db.engine import Database, create_engine
from controlplane.db.notify import asyncpg_connect_args
from controlplane.leadership import Duty, LeadershipLost, PostgresLeadership
from controlplane.leadership.lease import SingleProcessLeadership
from controlplane.placement import PlacementApplier

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

# Ends the connection that holds the lease, as a killed leader process or a cut
# network would; PostgreSQL then releases the advisory lock. Only in the test's own
# database: tests in other pytest-xdist workers hold advisory locks of their own (one
# such connection, cut here, failed another worker's test in CI).
TERMINATE_LEASE_HOLDER = (
    select(func.pg_terminate_backend(text("pid")))
    .select_from(text("pg_locks"))
    .where(
        text(
            "locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
)


class Member:
    """One control plane's leadership with a leader duty and a follower duty."""

    def __init__(self, database: Database, name: str) -> None:
        self.leadership = PostgresLeadership(
            asyncpg_connect_args(database.engine), name=name, retry_seconds=0.1, probe_seconds=0.2
        )
        self.leading = asyncio.Event()
        self.following = asyncio.Event()
        # How often the leader duty ended: a lost lease may be won back within one
        # retry, faster than a test could see the flag down.
        self.stopped_leading = 0
        self.leadership.add_duty(Duty("lead", self._hold(self.leading, self._left)))
        self.leadership.add_duty(Duty("follow", self._hold(self.following), role="follower"))
        self.task: asyncio.Task[None] | None = None

    def _left(self) -> None:
        self.stopped_leading += 1

    @staticmethod
    def _hold(flag: asyncio.Event, on_end=None):  # type: ignore[no-untyped-def]
        async def run() -> None:
            flag.set()
            try:
                await asyncio.Event().wait()
            finally:
                flag.clear()
                if on_end is not None:
                    on_end()

        return run

    def start(self) -> None:
        self.task = asyncio.create_task(self.leadership.run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def _until(check, timeout: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not reached in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@POSTGRES_ONLY
async def test_one_leader_then_takeover_and_the_deposed_epoch_is_refused(
    database_url: str,
) -> None:
    database = Database(create_engine(database_url))
    first, second = Member(database, "first"), Member(database, "second")
    first.start()
    try:
        await _until(first.leading.is_set)
        second.start()
        await _until(second.following.is_set)
        assert not second.leading.is_set()
        assert not first.following.is_set()
        deposed_epoch = first.leadership.epoch
        assert deposed_epoch is not None
        async with database.transaction() as session:
            await first.leadership.fence(session)  # the leader's write passes

        # The leader dies: its lease connection ends, and it does not come back.
        async with database.transaction() as session:
            await session.exec(TERMINATE_LEASE_HOLDER)
        await _until(lambda: first.stopped_leading > 0)  # it stopped acting at once
        await first.stop()
        took = await _until(second.leading.is_set)
        assert took < 5
        # (The first may have won the lease back once before it was stopped.)
        assert (second.leadership.epoch or 0) > deposed_epoch
        assert not second.following.is_set()

        # A deposed leader that has not noticed yet (its epoch still set) is refused.
        first.leadership._epoch = deposed_epoch
        with pytest.raises(LeadershipLost):
            async with database.transaction() as session:
                await first.leadership.fence(session)
    finally:
        for member in (first, second):
            if member.task is not None and not member.task.done():
                await member.stop()
        await database.close()


@POSTGRES_ONLY
async def test_a_placement_commit_under_a_stale_epoch_writes_nothing(database_url: str) -> None:
    database = Database(create_engine(database_url))
    member = Member(database, "only")
    member.start()
    try:
        await _until(member.leading.is_set)
        applier = PlacementApplier(database, AgentPool())
        wrote: list[str] = []

        async def before(_session: object) -> None:
            wrote.append("bookkeeping")

        await applier.commit([], before=before, fence=member.leadership.fence)
        async with database.transaction() as session:
            await session.exec(text("UPDATE cluster SET leader_epoch = leader_epoch + 1"))  # type: ignore[call-overload]
        with pytest.raises(LeadershipLost):
            await applier.commit([], before=before, fence=member.leadership.fence)
        assert wrote == ["bookkeeping"]
    finally:
        await member.stop()
        await database.close()


async def test_the_embedded_database_always_leads() -> None:
    leadership = SingleProcessLeadership()
    ran = asyncio.Event()

    async def duty() -> None:
        ran.set()

    leadership.add_duty(Duty("once", duty))
    task = asyncio.create_task(leadership.run())
    await asyncio.wait_for(ran.wait(), 5)
    assert leadership.epoch == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leadership.epoch is None
