"""Stopping background tasks, and waiting in them, the one way both programs do it.

Not `asyncio.wait_for` (ruff refuses it outside tests): on Python 3.11, when the
awaited thing completes in the same loop step as the waiting task is cancelled, it
returns the result and the cancel is lost, so a loop waiting that way never stops
(CI's hung task-queue test). `asyncio.timeout` keeps the cancel."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel every task, then wait until all have finished. Their cancellation is
    swallowed; the first other exception a task ended with is raised once all are done.

    Cancelling the caller while it waits is not swallowed: the CancelledError
    propagates, and the tasks, already cancelled, finish on their own."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; True when it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
