"""How readers of the event log learn that new events may be there.

:class:`EventWakeup` is the one seam between the log and its readers: a commit in this
process calls :meth:`~EventWakeup.committed` at once. Events committed by other
processes are noticed

- on PostgreSQL by :class:`NotifiedWakeup`: every transaction that records an event
  sends ``NOTIFY encedeus_events, '<event id>'`` (:data:`EVENTS_CHANNEL`, sent at its
  commit, never if it rolls back). After the listening connection reconnects (when
  notifications may have been missed) it reads the newest cursor at once, and it polls
  every :data:`SAFETY_POLL_SECONDS` in case a notification was lost some other way;
- on SQLite (one process) by :class:`PollingWakeup`: one indexed ``max(id)`` query per
  :data:`POLL_SECONDS` for the whole process.

Readers re-read the log from their own last cursor whenever the known cursor passes
it, so a missed or repeated wake-up costs at most a delay, never an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from common.logging import get_logger
from controlplane.db.notify import Notifier

log = get_logger(__name__)

POLL_SECONDS = 0.25
SAFETY_POLL_SECONDS = 5.0
#: The NOTIFY channel of committed events; the payload is the event's id (its cursor).
EVENTS_CHANNEL = "encedeus_events"


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

    :meth:`run` is the poll loop (owned by the app); `newest` reads the newest cursor;
    :meth:`poll_soon` makes the loop poll at once.
    """

    def __init__(
        self, newest: Callable[[], Awaitable[int]], interval: float = POLL_SECONDS
    ) -> None:
        self._newest = newest
        self._interval = interval
        self._known = 0
        self._changed = asyncio.Event()
        self._poll_requested = asyncio.Event()

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

    def poll_soon(self) -> None:
        """Read the newest cursor now rather than at the next interval."""
        self._poll_requested.set()

    async def run(self) -> None:
        """Poll the newest cursor until cancelled."""
        while True:
            self._poll_requested.clear()
            try:
                self.committed(await self._newest())
            except Exception as exc:  # a database blip: the next poll tries again
                log.warning("event_poll_failed", error=str(exc))
            # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancel
            # that arrives as the request is set.
            requested = asyncio.ensure_future(self._poll_requested.wait())
            try:
                await asyncio.wait([requested], timeout=self._interval)
            finally:
                requested.cancel()


class NotifiedWakeup(PollingWakeup):
    """:class:`EventWakeup` woken by ``NOTIFY`` on :data:`EVENTS_CHANNEL` (PostgreSQL),
    with a poll after every reconnect and every `interval` as a safety net."""

    def __init__(
        self,
        newest: Callable[[], Awaitable[int]],
        notifier: Notifier,
        interval: float = SAFETY_POLL_SECONDS,
    ) -> None:
        super().__init__(newest, interval)
        notifier.listen(EVENTS_CHANNEL, self._notified)
        notifier.on_reconnected(self.poll_soon)

    def _notified(self, payload: str) -> None:
        try:
            cursor = int(payload)
        except ValueError:
            log.warning("event_notification_malformed", payload=payload[:100])
            return
        self.committed(cursor)
