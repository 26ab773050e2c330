"""A console socket's live output: each new line goes out in the loop turn that read it
from the container (agent/runtime/docker_attach.py), with no task in between.

A line handed over through a queue waits for the reading task's next loop turn; on a
loaded machine that turn (a `select` that lets another thread take the GIL, the other
ready callbacks) was a fifth of the agent's share of a line's latency
(docs/performance.md, "Console latency").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

from agent.console.history import FOLLOWER_QUEUE, ConsoleLine

SendLine = Callable[[ConsoleLine], Coroutine[Any, Any, None]]
#: Sends a line at once if it can without waiting (True), else leaves it (False).
SendLineNow = Callable[[ConsoleLine], bool]


class LiveFeed:
    """Sends every line it is called with (it is a history listener) through `send`.

    The send runs at once, up to the point where it would wait: a frame is written
    without waiting unless the socket's buffer is full (a slow client). Then the rest
    of that send, and every line arriving meanwhile, is left to :meth:`run`, in order;
    past `limit` waiting lines newer ones are dropped (they stay in the history: `send
    logs` re-sends it), so a slow client cannot make the agent buffer without bound.
    """

    def __init__(
        self, send: SendLine, limit: int = FOLLOWER_QUEUE, send_now: SendLineNow | None = None
    ) -> None:
        self._send, self._limit, self._send_now = send, limit, send_now
        self._backlog: deque[ConsoleLine] = deque()
        self._unfinished: Awaitable[None] | None = None  # a send waiting for the socket
        self._failure: Exception | None = None
        self._wake = asyncio.Event()
        self.dropped = 0

    def __call__(self, line: ConsoleLine) -> None:
        if self._unfinished is not None or self._failure is not None:
            if len(self._backlog) < self._limit:
                self._backlog.append(line)
            else:
                self.dropped += 1
            return
        if self._send_now is not None and self._send_now(line):
            return  # written whole, no coroutine needed
        try:
            self._unfinished = run_until_suspended(self._send(line))
        except Exception as exc:  # raised by run(), in the feed's own task
            self._failure = exc
        if self._unfinished is not None or self._failure is not None:
            self._wake.set()

    async def run(self) -> None:
        """Finish the sends that had to wait, in order; raise what a send raised."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._failure is not None:
                raise self._failure
            if self._unfinished is not None:
                await self._unfinished
                while self._backlog:
                    await self._send(self._backlog.popleft())
                self._unfinished = None  # no await since the backlog emptied


def run_until_suspended(coro: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run `coro` now, in the caller's loop turn, up to its first suspension (as Python
    3.12's eager tasks do). None when it finished there; else an awaitable of the rest,
    which the caller must await (in a task) to finish it."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return _Rest(coro, yielded)


class _Rest:
    """The rest of a coroutine suspended on `yielded`: awaiting it hands that future
    to the awaiting task, then drives the coroutine on (values, exceptions and
    cancellation pass through, as `await coro` would)."""

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: Any) -> None:
        self._coro, self._yielded = coro, yielded

    def __await__(self) -> Generator[Any, Any, None]:
        yielded = self._yielded
        while True:
            try:
                value = yield yielded
            except GeneratorExit:
                self._coro.close()
                raise
            except BaseException as exc:
                try:
                    yielded = self._coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = self._coro.send(value)
                except StopIteration:
                    return
