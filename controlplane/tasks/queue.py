"""The task queue: tasks asked to start wait here (Pending, with `queued_at`) until a
node has room, and start in the order :mod:`controlplane.tasks.backfill` decides.

:meth:`TaskQueue.advance` is the one place queued tasks start; it runs one pass at a
time. :meth:`TaskQueue.run` is the loop that advances the queue whenever capacity
may have freed — any event on the bus (a task ended or was deleted, a replica or
deployment changed, a node came up or was drained), an explicit :meth:`wake` (a
node went down and its tasks were re-queued) — and on a timer as a catch-up. With
several control planes only the leader may run it (it places tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import func, or_, update
from sqlmodel import and_, col, select

from common.cancellation import wait_set
from common.logging import get_logger
from controlplane.db.engine import Database
from controlplane.db.tables import Node
from controlplane.db.tables.tasks import FAILED, PENDING, Task
from controlplane.events.bus import EventBus, EventType, Subscription
from controlplane.scheduler import Snapshot
from controlplane.tasks.backfill import QueuedTask, can_ever_fit, order_queue
from controlplane.tasks.contract import TaskStartError, task_event
from controlplane.tasks.runner import TaskRunner

log = get_logger(__name__)

TIMER_SECONDS = 5.0
NEVER_FITS = (
    "the task needs {cpu} millicores and {memory} bytes; no enrolled node that is not "
    "draining has that much in total"
)
QUEUED = "queued: waiting for its turn"


class QueueCapacity(Protocol):
    """The committed capacity the queue orders its tasks on (the placement path's)."""

    async def snapshot(self) -> Snapshot:
        """Every node with the room committed work holds on it, now."""
        ...


def _now() -> datetime:
    return datetime.now(UTC)


async def queue_positions(database: Database, tasks: Sequence[Task]) -> dict[uuid.UUID, int]:
    """The 1-based place in the queue of each of `tasks` that is queued."""
    queued = [t for t in tasks if t.status == PENDING and t.queued_at is not None]
    positions: dict[uuid.UUID, int] = {}
    if not queued:
        return positions
    async with database.session() as session:
        for task in queued:
            ahead = select(func.count()).where(
                col(Task.status) == PENDING,
                col(Task.queued_at).is_not(None),
                or_(
                    col(Task.queued_at) < task.queued_at,
                    and_(col(Task.queued_at) == task.queued_at, col(Task.id) < task.id),
                ),
            )
            positions[task.id] = int((await session.exec(ahead)).one()) + 1
    return positions


class TaskQueue:
    """Queued tasks and the pass that starts them (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        runner: TaskRunner,
        capacity: QueueCapacity,
        bus: EventBus,
        *,
        timer_seconds: float = TIMER_SECONDS,
    ) -> None:
        self._db = database
        self._runner = runner
        self._capacity = capacity
        self._bus = bus
        self._timer = timer_seconds
        self._lock = asyncio.Lock()
        self._woken = asyncio.Event()

    async def never_fits(self, task: Task) -> str | None:
        """Why `task` can never start (no enrolled, non-draining node is big enough
        in total), or None when some node could hold it."""
        return _never_fits(task, await self._node_totals())

    async def _node_totals(self) -> list[tuple[int, int]]:
        """(CPU, memory) of every enrolled node that is not draining."""
        statement = select(Node.cpu_millis, Node.memory_bytes).where(
            col(Node.draining).is_(False), col(Node.status) != "pending"
        )
        async with self._db.session() as session:
            return [(cpu, memory) for cpu, memory in (await session.exec(statement)).all()]

    async def enqueue(self, task: Task) -> bool:
        """Put a Pending task at the end of the queue (False: it was not Pending or
        is queued already), then run a pass so it starts at once if it may."""
        async with self._db.transaction() as session:
            marked = await session.exec(
                update(Task)
                .where(
                    col(Task.id) == task.id,
                    col(Task.status) == PENDING,
                    col(Task.queued_at).is_(None),
                )
                .values(queued_at=_now(), queue_reason=QUEUED, updated_at=_now())
            )
        if marked.rowcount == 0:
            return False
        await self.advance()
        return True

    def wake(self) -> None:
        """Ask the loop for a pass soon (capacity may have freed)."""
        self._woken.set()

    async def advance(self) -> None:
        """One pass: fail the queued tasks that can no longer ever fit, start those
        the backfill rule lets start, record why the others wait."""
        async with self._lock:
            queued = await self._queued()
            if not queued:
                return
            totals = await self._node_totals()
            waiting = [t for t in queued if not await self._fail_if_never_fits(t, totals)]
            by_id = {str(t.id): t for t in waiting}
            items = [QueuedTask(str(t.id), t.cpu_millis, t.memory_bytes) for t in waiting]
            verdicts = order_queue(await self._capacity.snapshot(), items)
            for verdict in verdicts:
                task = by_id[verdict.task_id]
                if verdict.start:
                    await self._start(task, verdict.avoid_nodes)
                elif verdict.reason != task.queue_reason:
                    await self._set_reason(task.id, verdict.reason)

    async def _queued(self) -> list[Task]:
        statement = (
            select(Task)
            .where(col(Task.status) == PENDING, col(Task.queued_at).is_not(None))
            .order_by(col(Task.queued_at), col(Task.id))
        )
        async with self._db.session() as session:
            return list((await session.exec(statement)).all())

    async def _start(self, task: Task, avoid_nodes: frozenset[str]) -> None:
        try:
            await self._runner.start(task, avoid_nodes=avoid_nodes)
        except TaskStartError as exc:
            # no_capacity: the room was taken between the pass and the commit; the
            # task keeps its place. agent_error: the runner failed the task.
            log.info("queued_task_not_started", task_id=str(task.id), code=exc.code)
            if exc.code == "no_capacity":
                await self._set_reason(task.id, f"waiting for capacity: {exc}")

    async def _set_reason(self, task_id: uuid.UUID, reason: str) -> None:
        async with self._db.transaction() as session:
            await session.exec(
                update(Task)
                .where(col(Task.id) == task_id, col(Task.status) == PENDING)
                .values(queue_reason=reason[:500])
            )

    async def _fail_if_never_fits(self, task: Task, totals: list[tuple[int, int]]) -> bool:
        reason = _never_fits(task, totals)
        if reason is None:
            return False
        async with self._db.transaction() as session:
            failed = await session.exec(
                update(Task)
                .where(col(Task.id) == task.id, col(Task.status) == PENDING)
                .values(status=FAILED, error_message=reason, finished_at=_now(), updated_at=_now())
            )
            row = await session.get(Task, task.id, populate_existing=True)
        if failed.rowcount and row is not None:
            self._bus.publish(task_event(row, EventType.TASK_FAILED))
        return True

    async def run(self) -> None:
        """Advance on every bus event, every :meth:`wake` and every `timer_seconds`,
        until cancelled. One pass at a time; a failed pass is logged, not fatal."""
        async with self._bus.subscribe(name="task-queue") as events:
            forward = asyncio.create_task(self._wake_on(events), name="task-queue-events")
            try:
                while True:
                    await wait_set(self._woken, self._timer)
                    self._woken.clear()
                    try:
                        await self.advance()
                    except Exception:
                        log.exception("task_queue_pass_failed")
            finally:
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forward

    async def _wake_on(self, events: Subscription) -> None:
        async for _ in events:
            self._woken.set()


def _never_fits(task: Task, totals: list[tuple[int, int]]) -> str | None:
    if can_ever_fit(QueuedTask(str(task.id), task.cpu_millis, task.memory_bytes), totals):
        return None
    return NEVER_FITS.format(cpu=task.cpu_millis, memory=task.memory_bytes)
