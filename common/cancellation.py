"""Stopping background tasks, the one way both programs do it."""

from __future__ import annotations

import asyncio
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
