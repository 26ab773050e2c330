from __future__ import annotations

import asyncio

import pytest

from common.cancellation import cancel_and_wait


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
