"""The durable event log: events written in the transaction that makes the change
they describe (a transactional outbox), read back in cursor order.

Contract:

- :meth:`EventStore.record` inserts an event in the caller's transaction. The event
  exists for readers exactly when that transaction commits, and not at all when it
  rolls back.
- Cursors (``events.id``) become visible to readers in increasing order, never out
  of order: every read by cursor stops at the settled horizon
  (:mod:`controlplane.events.horizon`), below which no event can appear any more.
  Writers are not serialised (on PostgreSQL they commit concurrently, in any order):
  each event-recording transaction takes its transaction id before it draws the
  event id, which is what lets readers decide when a gap is settled. A reader that
  saw cursor N never sees a new event below N.
- With a notifier (PostgreSQL), every committed event is announced with ``NOTIFY
  encedeus_events, '<its id>'`` *after* its commit, on the notifier's own connection
  (commits that end together send one, with the highest id): every process learns
  of it (:class:`controlplane.events.wakeup.NotifiedWakeup`) and moves its horizon.
  Not in the recording transaction: PostgreSQL serialises the commits of every
  transaction that NOTIFYs (a global lock held through the commit's WAL flush), which
  would cap event commits as an advisory lock did. A process that dies between a
  commit and its NOTIFY costs the others a delay (the next NOTIFY, or their safety
  poll), never an event.
- Rows older than the retention are pruned in batches, but never a row that a
  webhook receiver still has to be served (below the lowest webhook cursor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Executable, bindparam, delete, func, insert
from sqlalchemy import event as orm_events
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.db.engine import Database
from controlplane.db.notify import Notifier
from controlplane.db.tables.events import EventRecord, WebhookCursor
from controlplane.db.types import utcnow
from controlplane.events.bus import Event
from controlplane.events.horizon import Horizon
from controlplane.events.wakeup import EVENTS_CHANNEL

_HOOKED = "encedeus_event_hook"
PRUNE_BATCH = 1000


class CursorExpired(Exception):
    """The cursor is older than the retained log: the reader must re-read state."""


_COLUMNS = ("type", "owner_id", "deployment_id", "task_id", "node_id", "data", "created_at")


def row_values(event: Event) -> dict[str, Any]:
    """The column values of `event`'s row (all but the id)."""
    return {
        "type": event.type_name,
        "owner_id": event.owner_id,
        "deployment_id": event.deployment_id,
        "task_id": event.task_id,
        "node_id": event.node_id,
        "data": dict(event.data),
        "created_at": event.timestamp,
    }


def _insert_statements() -> tuple[Executable, Executable]:
    """The two ways an event is inserted, built once (each event then costs only its
    parameters): a plain insert (SQLite), and on PostgreSQL one that takes the
    transaction's xid before the id's default, nextval, is evaluated (by the
    projection over the materialised CTE: what lets readers settle gaps, see the
    horizon module)."""
    table = EventRecord.__table__  # type: ignore[attr-defined]
    plain = insert(table).returning(table.c.id)
    xact = select(func.pg_current_xact_id().label("xact")).cte("xact")
    xact = xact.prefix_with("MATERIALIZED")
    row = select(*(bindparam(name, type_=table.c[name].type) for name in _COLUMNS))
    after_xid = insert(table).from_select(list(_COLUMNS), row.select_from(xact))
    return plain, after_xid.returning(table.c.id)


_INSERT, _INSERT_AFTER_XID = _insert_statements()


def from_record(row: EventRecord) -> Event:
    """The event of `row`, carrying its cursor."""
    return Event(
        row.type,
        owner_id=row.owner_id,
        deployment_id=row.deployment_id,
        task_id=row.task_id,
        node_id=row.node_id,
        data=row.data,
        timestamp=row.created_at,
        cursor=row.id,
    )


@dataclass(frozen=True, slots=True)
class Retention:
    """How long events are kept."""

    seconds: float = 24 * 3600


class EventStore:
    """Writes and reads the `events` table (see module doc)."""

    def __init__(
        self,
        database: Database,
        on_commit: Callable[[int], None] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._db = database
        self._on_commit = on_commit
        self._notifier = notifier
        self.horizon = Horizon(database)
        self._unannounced = 0

    @property
    def database(self) -> Database:
        """The database the log lives in."""
        return self._db

    async def record(self, session: AsyncSession, event: Event) -> int:
        """Insert `event` in `session`'s transaction; its cursor. Readers in this process
        are woken when the transaction commits."""
        info = session.sync_session.info
        statement = _INSERT_AFTER_XID if self._db.dialect == "postgresql" else _INSERT
        inserted = await session.exec(statement, params=row_values(event))  # type: ignore[call-overload]
        cursor = int(inserted.scalar_one())
        info["encedeus_event_cursor"] = max(cursor, info.get("encedeus_event_cursor", 0))
        if not info.get(_HOOKED):
            info[_HOOKED] = True
            orm_events.listen(session.sync_session, "after_commit", self._committed)
            orm_events.listen(session.sync_session, "after_rollback", _forget_cursor)
        return cursor

    def _committed(self, sync_session: object) -> None:
        info = getattr(sync_session, "info", {})
        cursor = info.pop("encedeus_event_cursor", None)
        if cursor is None:
            return
        self.horizon.committed(cursor)
        if self._on_commit is not None:
            self._on_commit(cursor)
        if self._notifier is not None:
            if self._unannounced == 0:
                asyncio.get_running_loop().call_soon(self._announce)
            self._unannounced = max(self._unannounced, cursor)

    def _announce(self) -> None:
        cursor, self._unannounced = self._unannounced, 0
        if self._notifier is not None and cursor:
            self._notifier.notify_soon(EVENTS_CHANNEL, str(cursor))

    async def record_now(self, events: Sequence[Event]) -> None:
        """Write `events` in a transaction of their own."""
        async with self._db.transaction() as session:
            for item in events:
                await self.record(session, item)

    async def read_after(
        self, cursor: int, limit: int = 500, *, owner_id: str | None = None
    ) -> list[Event]:
        """Up to `limit` events after `cursor` and up to the settled horizon, oldest
        first (only `owner_id`'s when given)."""
        return (await self.read_page(cursor, limit, owner_id=owner_id))[0]

    async def read_page(
        self, cursor: int, limit: int = 500, *, owner_id: str | None = None
    ) -> tuple[list[Event], int]:
        """:meth:`read_after`, and the cursor read through: the last event's when the
        page is full, else the horizon the read stopped at (a reader that moves to it
        skips only ids with no event: rolled back, or another owner's)."""
        settled = self.horizon.value
        if settled <= cursor:
            return [], cursor
        query = select(EventRecord).where(
            col(EventRecord.id) > cursor, col(EventRecord.id) <= settled
        )
        if owner_id is not None:
            query = query.where(col(EventRecord.owner_id) == owner_id)
        query = query.order_by(col(EventRecord.id)).limit(limit)
        async with self._db.session() as session:
            rows = (await session.exec(query)).all()
        events = [from_record(row) for row in rows]
        if len(rows) == limit:
            return events, int(rows[-1].id or cursor)
        return events, settled

    async def latest(self) -> int:
        """The newest cursor (0 when the log is empty), settled or not: to tell a
        cursor that was never handed out; readers start at :meth:`start`."""
        async with self._db.session() as session:
            newest = (await session.exec(select(func.max(EventRecord.id)))).one()
        return int(newest or 0)

    async def start(self) -> int:
        """Where a new reader starts: the settled horizon (an event in flight below the
        newest id is still ahead of it), once it has caught up with the log."""
        return await self.horizon.start()

    async def follower_cursor(self, key: str) -> int:
        """The cursor of the log follower `key` (a webhook receiver, the mail notifier)
        in ``webhook_cursors``; a new follower's row starts at :meth:`start`."""
        # Before the transaction: it would hold a connection while the horizon looks
        # with another (many new followers at once exhausted the pool: 30 s stalls).
        start = await self.start()
        async with self._db.transaction() as session:
            row = await session.get(WebhookCursor, key)
            if row is not None:
                return row.cursor
            session.add(WebhookCursor(endpoint=key, cursor=start))
            return start

    async def check_cursor(self, cursor: int) -> None:
        """Raise :class:`CursorExpired` when events after `cursor` may have been pruned.

        `0` means "everything retained" and never expires. Pruning removes the oldest
        rows only and always keeps the newest, so the retained log is every event after
        ``min(id) - 1``: a cursor below that has lost events."""
        if cursor <= 0:
            return
        async with self._db.session() as session:
            oldest = (await session.exec(select(func.min(EventRecord.id)))).one()
        if oldest is not None and cursor < oldest - 1:
            raise CursorExpired(f"cursor {cursor} is older than the retained events")

    async def prune(self, retention: Retention, now: datetime | None = None) -> int:
        """Delete events older than `retention` in batches, keeping every row a webhook
        receiver still needs; how many rows were deleted."""
        cutoff = (now or utcnow()) - timedelta(seconds=retention.seconds)
        removed = 0
        while True:
            async with self._db.transaction() as session:
                needed = (await session.exec(select(func.min(WebhookCursor.cursor)))).one()
                batch = (
                    select(EventRecord.id)
                    .where(col(EventRecord.created_at) < cutoff)
                    .order_by(col(EventRecord.id))
                    .limit(PRUNE_BATCH)
                )
                # The newest row stays: it tells expired cursors from valid ones.
                newest = (await session.exec(select(func.max(EventRecord.id)))).one()
                batch = batch.where(col(EventRecord.id) < (newest or 0))
                if needed is not None:
                    batch = batch.where(col(EventRecord.id) <= needed)
                ids = list((await session.exec(batch)).all())
                if ids:
                    await session.exec(delete(EventRecord).where(col(EventRecord.id).in_(ids)))
            removed += len(ids)
            if len(ids) < PRUNE_BATCH:
                return removed


def _forget_cursor(sync_session: object) -> None:
    info = getattr(sync_session, "info", {})
    info.pop("encedeus_event_cursor", None)
