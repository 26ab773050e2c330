"""How readers of the event log learn that new events may be there.

:class:`EventWakeup` is the one seam between the log and its readers: a commit in this
process calls :meth:`~EventWakeup.committed` at once, and events committed by other
processes are noticed by :class:`PollingWakeup` within its poll interval (one indexed
``max(id)`` query per interval for the whole process). A LISTEN/NOTIFY implementation
can replace the polling without changing any reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from common.logging import get_logger

log = get_logger(__name__)

POLL_SECONDS = 0.25


class EventWakeup(Protocol):
    """Tells readers that events up to a cursor exist."""

    @property
    def known(self) -> int:
        """The newest cursor known to be committed."""
        ...

    def committed(self, cursor: int) -> None:
        """Events up to `cursor` are committed (call on the event loop's thread)."""
        ...

    async def wait_beyond(self, cursor: int) -> None:
        """Return once an event after `cursor` is known to exist (wrap in
        ``asyncio.wait_for`` to bound the wait)."""
        ...


class PollingWakeup:
    """:class:`EventWakeup` from local commits plus a poll of the newest cursor.

    :meth:`run` is the poll loop (owned by the app); `newest` reads the newest cursor.
    """

    def __init__(
        self, newest: Callable[[], Awaitable[int]], interval: float = POLL_SECONDS
    ) -> None:
        self._newest = newest
        self._interval = interval
        self._known = 0
        self._changed = asyncio.Event()

    @property
    def known(self) -> int:
        """The newest cursor known to exist."""
        return self._known

    def committed(self, cursor: int) -> None:
        if cursor > self._known:
            self._known = cursor
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_beyond(self, cursor: int) -> None:
        while self._known <= cursor:
            await self._changed.wait()

    async def run(self) -> None:
        """Poll the newest cursor until cancelled."""
        while True:
            try:
                self.committed(await self._newest())
            except Exception as exc:  # a database blip: the next poll tries again
                log.warning("event_poll_failed", error=str(exc))
            await asyncio.sleep(self._interval)
