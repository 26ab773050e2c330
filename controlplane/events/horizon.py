"""The settled horizon of the event log: the highest cursor H such that every event
with a cursor at or below H that will ever exist is already visible. Readers read by
cursor only up to H, so a reader that saw cursor N never later sees an event below N.

Why it is needed (PostgreSQL): event writers are not serialised. ``events.id`` comes
from a sequence when the row is inserted, and transactions commit in any order, so
a reader may see id M while a lower id is still in flight (it will appear later) or
was rolled back (it never will).

How a gap becomes decidable: every transaction that records an event has its
top-level transaction id (xid) *before* it draws the event id (the writer's statement,
:mod:`controlplane.events.store`). Ids are drawn in time order, so if a snapshot S sees
id M, every id below M was drawn before M by a transaction that already had an xid:
either it ended before S (its row is visible in S, or it rolled back: a permanent
gap) or it was running at S. The transactions running at S are those in
``pg_snapshot_xip(S)`` *and* those whose xid is at or above ``pg_snapshot_xmax(S)``
(xmax is one past the newest *completed* xid, and running xids above it are not
listed): the reader bounds the latter by drawing an xid of its own after S (only when
it sees a gap; its transaction is rolled back). Once a later snapshot sees every one
of those transactions ended, every id up to M is settled. Only the transactions
running at S are waited for, never the global xmin: a long read-only transaction
(holding xmin, with no xid) never stalls the feed; a long transaction *with* an xid
delays only a gap that no commit fills (a rolled-back event), until it ends.

One :class:`Horizon` per process and database (readers of every process compute their
own; all of them are correct, as it is derived from the database alone):

- :meth:`Horizon.advance` looks at the log once (one query: the ids above H, index
  only, with the statement's snapshot), walks consecutive ids from H + 1, and at a
  gap remembers the transactions that may still fill it; the next look that sees them
  ended moves H past the gap. :attr:`Horizon.unsettled` says a gap waits (a rollback
  sends no NOTIFY: look again shortly).
- :meth:`Horizon.committed` takes an id known to be committed (a NOTIFY, a local
  commit): H moves over committed ids next to it with no look at all.
- :meth:`Horizon.start` is where a new reader starts (the feed, a new webhook, a new
  log follower): H once it has reached the newest event seen at the first look.
- On SQLite (one writer at a time) ids commit in order: H is ``max(id)``, and a local
  commit moves it at once (:meth:`Horizon.committed`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, text
from sqlmodel import col, select

from common.logging import get_logger
from controlplane.db.engine import Database
from controlplane.db.tables.events import EventRecord

log = get_logger(__name__)

#: Ids read above H in one look: a longer consecutive run is walked over several looks.
LOOK_LIMIT = 5000
#: Pauses between looks while a gap waits (the last one repeats).
RETRY_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)
#: More xids than this assigned but not completed at one snapshot: look again later.
MAX_HOLDERS = 100_000

# One statement, one snapshot: the snapshot, the newest id and the ids above :h that
# it sees, and (only when it sees a gap) an xid drawn after the snapshot was taken.
_LOOK = text(
    """
    WITH seen AS MATERIALIZED (
        SELECT id FROM events WHERE id > :h ORDER BY id LIMIT :limit
    ), newest AS MATERIALIZED (SELECT coalesce(max(id), 0) AS id FROM events)
    SELECT pg_current_snapshot()::text AS snapshot,
           (SELECT id FROM newest) AS newest,
           ARRAY(SELECT id FROM seen) AS ids,
           CASE WHEN (SELECT id FROM newest) - :h > (SELECT count(*) FROM seen)
                THEN pg_current_xact_id()::text END AS next_xid
    """
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A PostgreSQL snapshot (``xmin:xmax:xip``, 64-bit xids)."""

    xmin: int
    xmax: int
    xip: frozenset[int]

    @classmethod
    def parse(cls, raw: str) -> Snapshot:
        xmin, xmax, xip = raw.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def sees_ended(self, xid: int) -> bool:
        """Whether transaction `xid` had ended (committed or not) when this snapshot
        was taken (``pg_visible_in_snapshot``)."""
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)


@dataclass(frozen=True, slots=True)
class Gap:
    """Every id up to `through` is settled once the transactions `running` and those
    with an xid in [`above`, `below`) have ended."""

    through: int
    running: frozenset[int]
    above: int
    below: int

    def settled_in(self, snapshot: Snapshot) -> bool:
        """Whether `snapshot` sees every transaction that may fill the gap ended."""
        return all(snapshot.sees_ended(x) for x in self.running) and all(
            snapshot.sees_ended(x) for x in range(self.above, self.below)
        )


@dataclass(frozen=True, slots=True)
class Look:
    """What one statement saw: its snapshot, the ids above H in order (at most
    LOOK_LIMIT), the newest id, and an xid drawn after the snapshot (None when the
    statement saw no gap)."""

    snapshot: Snapshot
    ids: Sequence[int]
    newest: int
    next_xid: int | None


def step(horizon: int, gap: Gap | None, look: Look) -> tuple[int, Gap | None]:
    """The horizon and the gap waited for after `look` (pure)."""
    if gap is not None and gap.settled_in(look.snapshot):
        horizon, gap = max(horizon, gap.through), None
    for cursor in look.ids:
        if cursor > horizon + 1:
            break
        horizon = max(horizon, cursor)
    if gap is not None and gap.through <= horizon:
        gap = None
    if gap is None and look.newest > horizon and look.next_xid is not None:
        snapshot = look.snapshot
        if look.next_xid - snapshot.xmax <= MAX_HOLDERS:
            gap = Gap(look.newest, snapshot.xip, snapshot.xmax, look.next_xid)
    return horizon, gap


class Horizon:
    """The settled horizon of `database`'s event log (see module doc)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._ordered = database.dialect != "postgresql"
        self._value = 0
        self._gap: Gap | None = None
        # The newest id at the first look: H has started once it reaches it.
        self._target: int | None = None
        # Ids above H known to be committed (NOTIFY, local commits).
        self._committed: set[int] = set()
        self._looking = asyncio.Lock()
        # The look that starting readers share (see start).
        self._shared_look: asyncio.Task[int] | None = None

    @property
    def value(self) -> int:
        """H: every event with a cursor up to it that will ever exist is visible."""
        return self._value

    @property
    def unsettled(self) -> bool:
        """A gap waits for transactions to end: look again shortly."""
        return self._gap is not None or not self._started

    @property
    def _started(self) -> bool:
        return self._target is not None and self._value >= self._target

    def committed(self, cursor: int) -> bool:
        """An event with `cursor` committed (here, or NOTIFYed by any process): whether
        H reached it at once, or a look is needed. On SQLite commits are in cursor
        order. On PostgreSQL H moves over committed ids next to it (every id up to H is
        settled and H + 1 committed: H + 1 is settled), so events committed in order
        need no look; a lower id still missing needs one (it may have rolled back)."""
        if cursor <= self._value:
            return True
        if self._ordered:
            self._value = cursor
            return True
        if len(self._committed) >= MAX_HOLDERS:
            self._committed.clear()
        self._committed.add(cursor)
        self._take_committed()
        return self._value >= cursor

    def _take_committed(self) -> None:
        while self._value + 1 in self._committed:
            self._value += 1
        self._committed = {c for c in self._committed if c > self._value}

    async def advance(self) -> int:
        """Look at the log once; H after it."""
        async with self._looking:
            if self._ordered:
                async with self._db.session() as session:
                    newest = (await session.exec(select(func.max(col(EventRecord.id))))).one()
                self._value = max(self._value, int(newest or 0))
                self._target = self._target or 0
                return self._value
            # Before the first settlement, only the newest id matters: the log below
            # it is history (a reader starts at it), not walked id by id.
            look = await self._look(self._value, LOOK_LIMIT if self._started else 0)
            if self._target is None:
                self._target = look.newest
            # H as it is now: committed() may have moved it during the look (any H is
            # a fact, and the look's gap stands on its own snapshot).
            self._value, self._gap = step(self._value, self._gap, look)
            self._take_committed()
            if self._gap is not None and self._gap.through <= self._value:
                self._gap = None
            return self._value

    async def start(self) -> int:
        """Where a new reader starts: H, once it has reached the newest event seen at
        the first look (waits for the transactions then in flight to end).

        Readers starting together share one look: every id up to a look's H was
        visible to that look, so an event committed after start returns is above it,
        whoever asked for the look (40 webhooks made at once queued 40 looks, each
        ~30 ms on a busy PostgreSQL, behind one another)."""
        for attempt in range(1 << 30):
            await self._advance_shared()
            if self._started:
                return self._value
            if attempt == 200:
                log.warning("event_horizon_waiting", gap=str(self._gap))
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
        raise AssertionError("unreachable")

    async def _advance_shared(self) -> int:
        """:meth:`advance`, joining the shared look when one is under way (shielded:
        a caller that goes away does not cancel it for the others)."""
        look = self._shared_look
        if look is None:
            look = asyncio.create_task(self.advance(), name="event-horizon-look")
            self._shared_look = look
            look.add_done_callback(self._shared_look_done)
        return await asyncio.shield(look)

    def _shared_look_done(self, look: asyncio.Task[int]) -> None:
        if self._shared_look is look:
            self._shared_look = None
        if not look.cancelled():
            look.exception()  # retrieved: a look whose callers all went away logs nothing

    async def _look(self, horizon: int, limit: int) -> Look:
        # A session, not a transaction: it rolls back, so the xid the statement may
        # draw costs no commit (no WAL flush).
        async with self._db.session() as session:
            connection = await session.connection()
            row = (await connection.execute(_LOOK, {"h": horizon, "limit": limit})).one()
        return Look(
            Snapshot.parse(row.snapshot),
            list(row.ids),
            int(row.newest),
            int(row.next_xid) if row.next_xid is not None else None,
        )
