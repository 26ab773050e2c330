"""A small typed in-process publish/subscribe bus for control plane events.

Contract:

- Durable events: with a log attached (:meth:`EventBus.attach`, done by the app),
  :meth:`EventBus.record` writes an event in the caller's transaction (the
  transactional outbox, :mod:`controlplane.events.store`) and :meth:`EventBus.publish`
  writes it soon after in a transaction of its own. Subscribers then receive events
  as the feed (:mod:`controlplane.events.feed`) reads them back from the log, each
  carrying its ``cursor``, from every process that shares the database.
- Without a log (unit tests, tools) the bus is purely in-process: both methods hand
  the event straight to the subscribers, without a cursor.
- :meth:`EventBus.publish` never blocks and never raises into the publisher. It may be
  called from the event loop's thread or from any other thread (it hops onto the
  loop). Events published before anyone subscribes are simply not seen.
- Every :class:`Subscription` owns a bounded queue. When a subscriber is slower than
  the publishers and its queue is full, new events for *that* subscriber are dropped
  (counted in :attr:`Subscription.dropped`); other subscribers and the publisher are
  not affected.
- A subscription receives the events that pass its filter, in publication order.
- :class:`Event` carries the owner's user id so that consumers facing users (the
  notifications WebSocket, per-user webhooks) can show an account only its own
  resources. ``owner_id=None`` marks a system event (e.g. node events): only admins
  see those.

Typical use::

    bus.publish(Event(EventType.TASK_STARTED, owner_id=user_id, task_id=task_id))

    async with bus.subscribe(lambda e: e.owner_id == user_id) as events:
        async for event in events:
            ...
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from common.logging import get_logger

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

log = get_logger(__name__)

DEFAULT_BUFFER = 256


class EventType(StrEnum):
    """Every event the control plane publishes; the value is the wire name."""

    DEPLOYMENT_CREATED = "deployment_created"
    DEPLOYMENT_STATUS_CHANGED = "deployment_status_changed"
    DEPLOYMENT_DELETED = "deployment_deleted"
    REPLICA_STATUS_CHANGED = "replica_status_changed"
    # A slot moved after its node was lost (docs/stateful.md): its data restored from a
    # backup, or started without it.
    REPLICA_RESTORED = "replica_restored"
    REPLICA_STARTED_EMPTY = "replica_started_empty"
    REPLICA_RESTORE_FAILED = "replica_restore_failed"
    # A slot moved to another live node with its data (docs/stateful.md, "Transfers").
    REPLICA_TRANSFER_PROGRESS = "replica_transfer_progress"
    REPLICA_MOVED = "replica_moved"
    REPLICA_MOVE_FAILED = "replica_move_failed"
    # Seed 004's rollout vocabulary, for webhooks only (events/seed_rollouts.py).
    DEPLOYMENT_STARTED = "deployment_started"
    DEPLOYMENT_COMPLETED = "deployment_completed"
    DEPLOYMENT_FAILED = "deployment_failed"
    TASK_CREATED = "task_created"
    TASK_STARTED = "task_started"
    TASK_SUCCEEDED = "task_succeeded"
    TASK_FAILED = "task_failed"
    TASK_DELETED = "task_deleted"
    TASK_REQUEUED = "task_requeued"
    NODE_UP = "node_up"
    NODE_DOWN = "node_down"
    NODE_DRAINING = "node_draining"
    NODE_DELETED = "node_deleted"
    BACKUP_COMPLETED = "backup_completed"
    BACKUP_FAILED = "backup_failed"
    RESTORE_COMPLETED = "restore_completed"
    RESTORE_FAILED = "restore_failed"
    TEST = "test"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, as every consumer (WebSocket, webhooks, tasks) sees it.

    ``type`` may be an :class:`EventType` or any snake_case string (it is sent as is).
    ``data`` must be JSON-serialisable.
    """

    type: EventType | str
    owner_id: str | None = None
    deployment_id: str | None = None
    task_id: str | None = None
    node_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=_now)
    cursor: int | None = None
    # The event as a ready WebSocket text frame (the feed makes it once for every socket).
    wire: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def type_name(self) -> str:
        """The wire name of the event type."""
        return str(self.type)

    def to_json(self) -> dict[str, Any]:
        """Seed 004's notification shape: type, the resource ids that apply, timestamp, data."""
        body: dict[str, Any] = {"type": self.type_name}
        if self.cursor is not None:
            body["cursor"] = self.cursor
        for key in ("deployment_id", "task_id", "node_id"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        body["timestamp"] = self.timestamp.isoformat().replace("+00:00", "Z")
        body["data"] = dict(self.data)
        return body


EventFilter = Callable[[Event], bool]


class EventLog(Protocol):
    """Where a durable bus writes (the real one: :class:`controlplane.events.feed.EventFeed`)."""

    async def record(self, session: AsyncSession, event: Event) -> int:
        """Insert `event` in `session`'s transaction; its cursor."""
        ...

    def write_soon(self, event: Event) -> None:
        """Queue `event` for a transaction of its own; never blocks."""
        ...


class Subscription:
    """A bounded stream of events; an async iterator and an async context manager.

    Closing (or leaving the ``async with``) unregisters it and ends the iteration.
    """

    def __init__(self, bus: EventBus, accepts: EventFilter | None, maxsize: int, name: str) -> None:
        self._bus = bus
        self._accepts = accepts
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self._closed = False
        self.name = name
        self.dropped = 0

    def offer(self, event: Event) -> None:
        """Queue `event` if it passes the filter; drop it when the buffer is full."""
        if self._closed:
            return
        try:
            if self._accepts is not None and not self._accepts(event):
                return
        except Exception:
            log.exception("event_filter_failed", subscription=self.name)
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("event_subscriber_slow", subscription=self.name, dropped=self.dropped)

    async def get(self) -> Event | None:
        """The next event, or None once the subscription is closed."""
        if self._closed and self._queue.empty():
            return None
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        """The next buffered event, or None when none is waiting."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        """Stop receiving; a pending :meth:`get` returns None. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._bus._remove(self)
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            # Make room for the end marker: the subscriber is going away anyway.
            self._queue.get_nowait()
            self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """In-process fan-out of :class:`Event` to bounded subscriptions (see module doc)."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.published = 0
        self._log: EventLog | None = None

    def attach(self, log: EventLog) -> None:
        """Make events durable: from now on they are written to `log` and subscribers
        get them as the feed reads them back (see module doc)."""
        self._log = log

    @property
    def durable(self) -> bool:
        """True when events go through the durable log."""
        return self._log is not None

    async def record(self, session: AsyncSession, event: Event) -> int | None:
        """Write `event` in `session`'s transaction (it exists exactly when that commits);
        its cursor. Without a log, hand it to the subscribers now (None)."""
        if self._log is None:
            self.publish(event)
            return None
        return await self._log.record(session, event)

    def subscribe(
        self,
        accepts: EventFilter | None = None,
        *,
        maxsize: int = DEFAULT_BUFFER,
        name: str = "subscriber",
    ) -> Subscription:
        """A new subscription receiving the events `accepts` returns True for (all if None).

        Must be called from within the running event loop.
        """
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        subscription = Subscription(self, accepts, maxsize, name)
        self._subscriptions.append(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        """Write `event` to the log in a transaction of its own, soon (or, without a
        log, hand it to every subscription now); never blocks, never raises. Prefer
        :meth:`record` inside the transaction that makes the change."""
        if self._log is not None:
            try:
                self._log.write_soon(event)
            except Exception:
                log.exception("event_publish_failed", type=str(event.type))
            return
        self.deliver(event)

    def deliver(self, event: Event) -> None:
        """Hand `event` to every subscription now (the feed, for events read from the
        log); never blocks, never raises."""
        try:
            loop = self._loop
            if loop is not None and threading.get_ident() != self._loop_thread:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(self._fan_out, event)
                return
            self._fan_out(event)
        except Exception:
            log.exception("event_publish_failed", type=str(event.type))

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscriptions)

    def subscribers_named(self, name: str) -> int:
        """How many open subscriptions were made with `name`."""
        return sum(1 for subscription in self._subscriptions if subscription.name == name)

    def close(self) -> None:
        """Close every subscription (their iterators end)."""
        for subscription in list(self._subscriptions):
            subscription.close()

    def _fan_out(self, event: Event) -> None:
        self.published += 1
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
