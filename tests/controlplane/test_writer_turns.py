"""SQLite writer turns: arrival order, a lane that goes first, and cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from controlplane.db.engine import Database, create_engine, writes_go_first
from controlplane.db.writer_turns import WriterTurns


async def _queue(turns: WriterTurns, name: str, order: list[str], first: bool = False) -> None:
    await turns.acquire(first=first)
    order.append(name)
    await asyncio.sleep(0)
    turns.release()


async def test_turns_go_in_arrival_order_with_the_first_lane_ahead() -> None:
    turns = WriterTurns()
    await turns.acquire()
    order: list[str] = []
    waiters = [asyncio.create_task(_queue(turns, f"w{n}", order)) for n in range(3)]
    await asyncio.sleep(0)
    waiters.append(asyncio.create_task(_queue(turns, "urgent", order, first=True)))
    await asyncio.sleep(0)
    turns.release()
    await asyncio.gather(*waiters)
    assert order == ["urgent", "w0", "w1", "w2"]
    assert not turns.held()


async def test_a_cancelled_waiter_gives_up_its_place_and_a_handed_turn_passes_on() -> None:
    turns = WriterTurns()
    await turns.acquire()
    order: list[str] = []
    gone = asyncio.create_task(_queue(turns, "gone", order))
    handed = asyncio.create_task(_queue(turns, "handed", order))
    last = asyncio.create_task(_queue(turns, "last", order))
    await asyncio.sleep(0)
    gone.cancel()
    turns.release()  # the turn goes to `handed`, which is cancelled before it runs
    handed.cancel()
    await asyncio.gather(gone, handed, last, return_exceptions=True)
    assert order == ["last"]
    assert not turns.held()


async def test_a_transaction_that_goes_first_skips_the_queued_writers(tmp_path: Path) -> None:
    # A deletion holds the reconciler's pause while it waits for its turn: everyone
    # waiting for the pause would also wait for every writer queued ahead.
    db = Database(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'first.db'}"))
    async with db.transaction() as session:
        await session.exec(text("CREATE TABLE t (name TEXT)"))  # type: ignore[call-overload]
    order: list[str] = []
    release = asyncio.Event()

    async def write(name: str, hold: bool = False) -> None:
        async with db.transaction() as session:
            insert = text("INSERT INTO t VALUES (:name)").bindparams(name=name)
            await session.exec(insert)  # type: ignore[call-overload]
            order.append(name)
            if hold:
                await release.wait()

    async def urgent() -> None:
        with writes_go_first():
            await write("urgent")

    holder = asyncio.create_task(write("holder", hold=True))
    while not order:
        await asyncio.sleep(0.01)
    queued = [asyncio.create_task(write(f"w{n}")) for n in range(5)]
    await asyncio.sleep(0.05)
    late = asyncio.create_task(urgent())
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(holder, late, *queued)
    assert order == ["holder", "urgent", "w0", "w1", "w2", "w3", "w4"]
    await db.close()
