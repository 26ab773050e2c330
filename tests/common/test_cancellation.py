from __future__ import annotations

import asyncio

import pytest

from common.cancellation import cancel_and_wait, wait_set


async def test_cancels_and_waits_for_every_task() -> None:
    finished: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            finished.append(name)

    tasks = [asyncio.create_task(worker(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks)
    assert sorted(finished) == ["a", "b"]
    assert all(t.cancelled() for t in tasks)


async def test_other_exceptions_are_raised() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)


async def test_finished_tasks_and_no_tasks_are_fine() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await cancel_and_wait(done)
    await cancel_and_wait()


async def test_every_task_is_waited_for_before_an_error_is_raised() -> None:
    finished: list[str] = []

    async def broken() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            raise RuntimeError("boom")

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)
            finished.append("slow")

    tasks = [asyncio.create_task(broken()), asyncio.create_task(slow_to_stop())]
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(*tasks)
    assert finished == ["slow"]


async def test_cancelling_the_caller_is_not_swallowed() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await release.wait()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()
    release.set()
    await asyncio.wait([task])
    assert task.cancelled()


async def test_wait_set_answers_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert not await wait_set(event, 0.01)
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_set(event, 5)


async def test_a_loop_waiting_on_wait_set_stops_when_cancelled_as_it_is_woken() -> None:
    # The event is set and the loop cancelled in one step: asyncio.wait_for on 3.11
    # returned the event's result, lost the cancel, and the loop waited again forever.
    woken = asyncio.Event()
    passes = 0

    async def loop_forever() -> None:
        nonlocal passes
        while True:
            await wait_set(woken, 3600)
            woken.clear()
            passes += 1

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(0.01)
    woken.set()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done == {task}
    assert task.cancelled()
    assert passes == 0
