"""How readers of the event log learn that new events may be there.

:class:`EventWakeup` is the one seam between the log and its readers. What it knows
is the settled horizon (:mod:`controlplane.events.horizon`): readers read up to it,
and are woken when it moves. A commit in this process calls
:meth:`~EventWakeup.committed` at once (on SQLite that moves the horizon; on
PostgreSQL it makes the horizon look at the log). Events committed by other processes
are noticed

- on PostgreSQL by :class:`NotifiedWakeup`: every committed event is announced with
  ``NOTIFY encedeus_events, '<event id>'`` (:data:`EVENTS_CHANNEL`, sent right after
  its commit, never for a rollback), which makes the horizon look at the log. After the
  listening connection reconnects (when notifications may have been missed) it looks
  at once, and it looks every :data:`SAFETY_POLL_SECONDS` in case a notification was
  lost some other way. While a gap waits (a lower id in flight, or rolled back, which
  notifies nobody) it looks again after 10, 20, 50, 100, 200, 200 … ms (``RETRY_SECONDS``);
- on SQLite (one process) by :class:`PollingWakeup`: one indexed ``max(id)`` query per
  :data:`POLL_SECONDS` for the whole process.

Readers re-read the log from their own last cursor whenever the horizon passes it, so
a missed or repeated wake-up costs at most a delay, never an event.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from common.logging import get_logger
from controlplane.db.notify import Notifier
from controlplane.events.horizon import RETRY_SECONDS, Horizon

log = get_logger(__name__)

POLL_SECONDS = 0.25
SAFETY_POLL_SECONDS = 5.0
#: The NOTIFY channel of committed events; the payload is the event's id (its cursor).
EVENTS_CHANNEL = "encedeus_events"


class EventWakeup(Protocol):
    """Tells readers that events up to a cursor exist."""

    @property
    def known(self) -> int:
        """The settled horizon as last seen: every event up to it is readable."""
        ...

    def committed(self, cursor: int) -> None:
        """An event with `cursor` committed (call on the event loop's thread)."""
        ...

    async def wait_beyond(self, cursor: int) -> None:
        """Return once the horizon is past `cursor` (wrap in ``asyncio.wait_for`` to
        bound the wait)."""
        ...


class PollingWakeup:
    """:class:`EventWakeup` from local commits plus a poll that advances `horizon`.

    :meth:`run` is the poll loop (owned by the app); :meth:`poll_soon` makes the loop
    poll at once.
    """

    def __init__(self, horizon: Horizon, interval: float = POLL_SECONDS) -> None:
        self._horizon = horizon
        self._interval = interval
        self._known = 0
        self._changed = asyncio.Event()
        self._poll_requested = asyncio.Event()

    @property
    def known(self) -> int:
        """The settled horizon as last seen."""
        return self._known

    def committed(self, cursor: int) -> None:
        if cursor <= self._known:
            return
        reached = self._horizon.committed(cursor)
        self.settled(self._horizon.value)
        if not reached:
            self.poll_soon()

    def settled(self, horizon: int) -> None:
        """The horizon reached `horizon`: wake the readers behind it."""
        if horizon > self._known:
            self._known = horizon
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_beyond(self, cursor: int) -> None:
        while self._known <= cursor:
            await self._changed.wait()

    def poll_soon(self) -> None:
        """Read the newest cursor now rather than at the next interval."""
        self._poll_requested.set()

    async def run(self) -> None:
        """Advance the horizon until cancelled: when asked, while a gap waits (a lower
        id in flight or rolled back: a rollback wakes nobody) after RETRY_SECONDS,
        otherwise every `interval`."""
        retries = 0
        while True:
            self._poll_requested.clear()
            before = self._known
            try:
                self.settled(await self._horizon.advance())
            except Exception as exc:  # a database blip: the next poll tries again
                log.warning("event_poll_failed", error=str(exc))
            if self._known > before:  # a new gap, if any: look again soon
                retries = 0
            if self._horizon.unsettled:
                pause = RETRY_SECONDS[min(retries, len(RETRY_SECONDS) - 1)]
                retries += 1
            else:
                pause, retries = self._interval, 0
            # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow a cancel
            # that arrives as the request is set.
            requested = asyncio.ensure_future(self._poll_requested.wait())
            try:
                await asyncio.wait([requested], timeout=min(pause, self._interval))
            finally:
                requested.cancel()


class NotifiedWakeup(PollingWakeup):
    """:class:`EventWakeup` woken by ``NOTIFY`` on :data:`EVENTS_CHANNEL` (PostgreSQL),
    with a poll after every reconnect and every `interval` as a safety net."""

    def __init__(
        self, horizon: Horizon, notifier: Notifier, interval: float = SAFETY_POLL_SECONDS
    ) -> None:
        super().__init__(horizon, interval)
        notifier.listen(EVENTS_CHANNEL, self._notified)
        notifier.on_reconnected(self.poll_soon)

    def _notified(self, payload: str) -> None:
        try:
            cursor = int(payload)
        except ValueError:
            log.warning("event_notification_malformed", payload=payload[:100])
            return
        self.committed(cursor)
