"""Turns of SQLite's single writer within one process: first come, first served,
with a lane that goes ahead for transactions others are waiting on.

A task that holds another lock while it waits for its turn (a deployment deletion
holds the reconciler's pause) makes everyone waiting for that lock also wait for
every writer queued ahead of it: with 40 busy clients, seconds. Such a task asks for
its turn with ``first=True`` (see `controlplane.db.engine.writes_go_first`) and is
served before the ordinary queue; the ordinary
queue stays in arrival order. The turn passes straight from one holder to the next,
so nobody can take it in between.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WriterTurns:
    """A FIFO lock with a priority lane (see module doc). Not thread-safe: one event
    loop uses it."""

    def __init__(self) -> None:
        self._held = False
        self._ordinary: deque[asyncio.Future[None]] = deque()
        self._first: deque[asyncio.Future[None]] = deque()

    def held(self) -> bool:
        """Whether some task holds the turn."""
        return self._held

    async def acquire(self, *, first: bool = False) -> None:
        """Wait for the turn (ahead of the ordinary queue when `first`)."""
        if not self._held and not self._ordinary and not self._first:
            self._held = True
            return
        turn = asyncio.get_running_loop().create_future()
        lane = self._first if first else self._ordinary
        lane.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over just as the waiter was cancelled: pass it on
            else:
                lane.remove(turn)
            raise

    def release(self) -> None:
        """Hand the turn to the next waiter (the priority lane first), or free it."""
        for lane in (self._first, self._ordinary):
            while lane:
                turn = lane.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False
