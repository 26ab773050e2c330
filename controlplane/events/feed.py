"""The event log as the bus sees it: writes events (in the caller's transaction, or
soon in one of their own) and reads them back in cursor order to hand them to the
bus's subscribers, each serialised once.

One :class:`EventFeed` per process. Its loops (:meth:`EventFeed.run`) are owned by the
app: the writer of events published without a session, the wakeup's poll (SQLite's
mechanism; a safety net beside NOTIFY on PostgreSQL; it advances the settled horizon,
:mod:`controlplane.events.horizon`), and the tail that follows the log up to the
horizon from where the horizon was at start.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from common.websocket_frames import text_frame
from controlplane.db.engine import Database
from controlplane.db.notify import Notifier
from controlplane.events.bus import Event, EventBus
from controlplane.events.store import EventStore
from controlplane.events.wakeup import NotifiedWakeup, PollingWakeup

log = get_logger(__name__)

READ_BATCH = 1000
WRITE_BATCH = 200


def with_wire(event: Event) -> Event:
    """`event` with its wire bytes made: its JSON as one WebSocket text frame (once,
    for every socket that sends it)."""
    payload = json.dumps(event.to_json(), separators=(",", ":")).encode()
    return replace(event, wire=text_frame(payload))


class EventFeed:
    """The bus's :class:`~controlplane.events.bus.EventLog` (see module doc)."""

    def __init__(self, database: Database, bus: EventBus, notifier: Notifier | None = None) -> None:
        # NOTIFY wakes every process on PostgreSQL; SQLite has one process, which
        # polls (its own commits wake it at once either way).
        announce = notifier if database.dialect == "postgresql" else None
        self.store = EventStore(database, on_commit=self._committed, notifier=announce)
        self.wakeup: PollingWakeup = (
            NotifiedWakeup(self.store.horizon, announce)
            if announce is not None
            else PollingWakeup(self.store.horizon)
        )
        self._bus = bus
        self._unwritten: asyncio.Queue[Event] = asyncio.Queue()
        self.cursor = 0
        bus.attach(self)

    def _committed(self, cursor: int) -> None:
        self.wakeup.committed(cursor)

    async def record(self, session: AsyncSession, event: Event) -> int:
        return await self.store.record(session, event)

    def write_soon(self, event: Event) -> None:
        self._unwritten.put_nowait(event)

    async def start(self) -> None:
        """Begin at the settled horizon (call before :meth:`run`)."""
        self.cursor = await self.store.start()
        self.wakeup.settled(self.cursor)

    async def run(self) -> None:
        """Write, poll and tail until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._write_forever())
            group.create_task(self.wakeup.run())
            group.create_task(self._tail_forever())

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._unwritten.get()]
            while len(batch) < WRITE_BATCH and not self._unwritten.empty():
                batch.append(self._unwritten.get_nowait())
            try:
                await self.store.record_now(batch)
            except Exception:
                log.exception("events_not_written", count=len(batch))

    async def _tail_forever(self) -> None:
        while True:
            await self.wakeup.wait_beyond(self.cursor)
            try:
                events, through = await self.store.read_page(self.cursor, READ_BATCH)
            except Exception as exc:
                log.warning("event_tail_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for event in events:
                self._bus.deliver(with_wire(event))
            self.cursor = through

    async def drain(self) -> None:
        """Write what is queued (at shutdown)."""
        pending: list[Event] = []
        while not self._unwritten.empty():
            pending.append(self._unwritten.get_nowait())
        if pending:
            await self.store.record_now(pending)
