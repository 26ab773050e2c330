"""Running tasks on agents and following them to the end.

State machine of a task row (every transition is a conditional UPDATE, so racing
callers — a start request, the Watch stream, a heartbeat — cannot undo each other):

    Pending --start--> Running --exit 0--> Succeeded
                          |  \\--exit != 0 / lost / create failed--> Failed

`Running` is written *before* the agent is asked to create the container, so an exit
event that arrives before the create call returns still finds the task. When a task
ends its output is copied into `task_logs`; the container stays until the task is
deleted, the logs are served from the database from then on.
"""

from __future__ import annotations

import collections
import contextlib
import uuid
from collections.abc import AsyncGenerator, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from controlplane.db.engine import Database
from controlplane.db.tables.tasks import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Task,
    TaskFile,
    TaskLog,
)
from controlplane.events.bus import EventBus, EventType
from controlplane.tasks.contract import (
    LABEL_TASK,
    TaskAgents,
    TaskPlacement,
    TaskStartError,
    server_spec,
    task_event,
)
from controlplane.tasks.orphans import ORPHAN_GRACE_SECONDS, OrphanSweeper, TaskRow
from protos import agent_pb2 as pb

log = get_logger(__name__)

MAX_KEPT_LOG_BYTES = 4 * 1024 * 1024
# A Running task whose container no heartbeat reports for this long is lost.
LOST_AFTER = timedelta(seconds=60)


def _now() -> datetime:
    return datetime.now(UTC)


class TaskRunner:
    """Starts tasks, moves them through their states, keeps and serves their logs."""

    def __init__(
        self,
        database: Database,
        bus: EventBus,
        agents: TaskAgents,
        placement: TaskPlacement,
        *,
        orphan_grace_seconds: float = ORPHAN_GRACE_SECONDS,
    ) -> None:
        self._db = database
        self._bus = bus
        self._agents = agents
        self._placement = placement
        self._orphans = OrphanSweeper(self._remove_server, orphan_grace_seconds)

    async def _remove_server(self, node_id: str, server_id: str) -> None:
        await self._agents.remove_server(node_id, server_id, delete_data=True)

    async def _transition(
        self, task_id: uuid.UUID, expected: str, announce: EventType, **values: object
    ) -> Task | None:
        """Apply `values` if the task is still `expected` and record the `announce` event
        in the same transaction; the updated row or None."""
        statement = (
            update(Task)
            .where(col(Task.id) == task_id, col(Task.status) == expected)
            .values(updated_at=_now(), **values)
        )
        async with self._db.transaction() as session:
            result = await session.exec(statement)
            if result.rowcount == 0:
                return None
            task = await session.get(Task, task_id, populate_existing=True)
            if task is not None:
                await self._bus.record(session, task_event(task, announce))
            return task

    async def start(self, task: Task, *, avoid_nodes: frozenset[str] = frozenset()) -> Task:
        """Place and start a Pending task on a node not in `avoid_nodes`; returns it
        Running (its `attempts` counted).

        TaskStartError when no node has room or it was started already (the task stays
        as it was), or when the agent refused (the task is then Failed). The node is
        chosen and the task marked Running in one commit at the placement commit point.
        """

        async def mark_running(session: AsyncSession, node_id: str) -> None:
            marked = await session.exec(
                update(Task)
                .where(col(Task.id) == task.id, col(Task.status) == PENDING)
                .values(
                    status=RUNNING,
                    node_id=uuid.UUID(node_id),
                    started_at=_now(),
                    updated_at=_now(),
                    attempts=col(Task.attempts) + 1,
                    queue_reason="",
                )
            )
            if marked.rowcount == 0:
                raise TaskStartError(
                    "the task was already started", code="task_started", status=409
                )
            started = await session.get(Task, task.id, populate_existing=True)
            if started is not None:
                await self._bus.record(session, task_event(started, EventType.TASK_STARTED))

        node_id = await self._placement.place(
            task.cpu_millis, task.memory_bytes, mark_running, avoid_nodes
        )
        if node_id is None:
            raise TaskStartError(
                "no ready node has room for this task", code="no_capacity", status=503
            )
        async with self._db.session() as session:
            running = await session.get(Task, task.id, populate_existing=True)
            files = (
                await session.exec(select(TaskFile).where(col(TaskFile.task_id) == task.id))
            ).all()
        if running is None:
            raise TaskStartError("the task was deleted", code="not_found", status=404)
        if running.attempts > 1:
            await self._remove_earlier_attempt(node_id, running.id)
        try:
            server = await self._agents.create_server(
                node_id, server_spec(running, files), start=True
            )
        except Exception as exc:
            await self.fail(running.id, f"the node could not start the task: {exc}")
            raise TaskStartError(str(exc), code="agent_error", status=502) from exc
        async with self._db.transaction() as session:
            recorded = await session.exec(
                update(Task)
                .where(col(Task.id) == task.id)
                .values(container_id=server.status.container_id)
            )
        if recorded.rowcount == 0:
            # Deleted while the container was being created: the delete found nothing
            # to remove yet, and no row accounts for the container any more.
            await self._remove_server(node_id, str(task.id))
            raise TaskStartError("the task was deleted", code="not_found", status=404)
        return running

    async def _remove_earlier_attempt(self, node_id: str, task_id: uuid.UUID) -> None:
        # A retried task may land on the node its lost attempt ran on, which kept that
        # container (same server id) while it was cut off.
        try:
            await self._agents.remove_server(node_id, str(task_id), delete_data=True)
        except Exception as exc:
            log.info("task_earlier_attempt_not_removed", task_id=str(task_id), error=str(exc))

    async def fail(self, task_id: uuid.UUID, message: str) -> None:
        """Mark a Running task Failed with `message` (no-op if it already ended)."""
        await self._transition(
            task_id,
            RUNNING,
            EventType.TASK_FAILED,
            status=FAILED,
            error_message=message[:2000],
            finished_at=_now(),
        )

    async def finish(
        self, task_id: uuid.UUID, exit_code: int, oom_killed: bool, node_id: str | None = None
    ) -> None:
        """Record the exit of a Running task: keep its logs, then Succeeded/Failed.
        With `node_id`, only an exit on the node the task runs on now counts (a
        retried task's lost attempt may report from its old node)."""
        async with self._db.session() as session:
            task = await session.get(Task, task_id)
        if task is None or task.status != RUNNING or task.node_id is None:
            return
        if node_id is not None and str(task.node_id) != node_id:
            return
        await self._keep_logs(task)
        status = SUCCEEDED if exit_code == 0 and not oom_killed else FAILED
        message = "killed: out of memory" if oom_killed else ""
        kind = EventType.TASK_SUCCEEDED if status == SUCCEEDED else EventType.TASK_FAILED
        await self._transition(
            task_id,
            RUNNING,
            kind,
            status=status,
            exit_code=exit_code,
            oom_killed=oom_killed,
            error_message=message,
            finished_at=_now(),
        )

    async def _keep_logs(self, task: Task) -> None:
        assert task.node_id is not None
        tail = _LogTail(MAX_KEPT_LOG_BYTES)
        try:
            async for line in self._agents.get_logs(
                str(task.node_id), str(task.id), tail=0, follow=False
            ):
                tail.add(f"{line.text}\n".encode())
        except Exception as exc:
            log.warning("task_logs_unavailable", task_id=str(task.id), error=str(exc))
        text, truncated = tail.text()
        async with self._db.transaction() as session:
            existing = await session.get(TaskLog, task.id)
            if existing is None:
                session.add(TaskLog(task_id=task.id, content=text, truncated=truncated))

    async def on_lifecycle(self, node_id: str, event: pb.LifecycleEvent) -> None:
        """Follow a task container's lifecycle event from a node's Watch stream."""
        labels = event.status.labels
        task_id = _task_id(event.server_id)
        if task_id is None or (labels and LABEL_TASK not in labels):
            return
        if event.kind == pb.LIFECYCLE_KIND_EXITED:
            await self.finish(task_id, event.exit_code, event.oom_killed, node_id)
        elif event.kind == pb.LIFECYCLE_KIND_REMOVED:
            await self.fail(task_id, "the task's container was removed")

    async def on_heartbeat(self, node_id: str, servers: Sequence[pb.ServerStatus]) -> None:
        """Level-triggered catch-up: exits missed while disconnected, lost containers,
        and task containers no task row accounts for (removed after a grace period,
        see :mod:`controlplane.tasks.orphans`)."""
        reported = {s.id: s for s in servers if LABEL_TASK in s.labels}
        for status in reported.values():
            task_id = _task_id(status.id)
            if task_id is not None and status.exited:
                await self.finish(task_id, status.exit_code, status.oom_killed, node_id)
        await self._fail_lost(node_id, set(reported))
        await self._orphans.sweep(node_id, list(reported.values()), await self._rows(reported))

    async def _rows(self, server_ids: Iterable[str]) -> dict[str, TaskRow]:
        """The task rows of `server_ids` (by server id) that exist."""
        ids = [task_id for task_id in map(_task_id, server_ids) if task_id is not None]
        if not ids:
            return {}
        async with self._db.session() as session:
            rows = (await session.exec(select(Task).where(col(Task.id).in_(ids)))).all()
        return {str(row.id): TaskRow.of(row) for row in rows}

    async def _fail_lost(self, node_id: str, reported: set[str]) -> None:
        cutoff = _now() - LOST_AFTER
        statement = select(Task).where(
            col(Task.status) == RUNNING,
            col(Task.node_id) == uuid.UUID(node_id),
            col(Task.started_at) < cutoff,
        )
        async with self._db.session() as session:
            running = (await session.exec(statement)).all()
        for task in running:
            if str(task.id) not in reported:
                await self.fail(task.id, "the task's container disappeared from its node")

    async def nodes_with_running_tasks(self) -> list[str]:
        """The nodes that Running tasks were placed on."""
        statement = select(Task.node_id).where(col(Task.status) == RUNNING).distinct()
        async with self._db.session() as session:
            rows = (await session.exec(statement)).all()
        return [str(node_id) for node_id in rows if node_id is not None]

    async def on_node_down(self, node_id: str) -> None:
        """The running tasks on a lost node go back to the queue while they have
        retries left (`attempts <= retries`), else fail."""
        statement = select(Task).where(
            col(Task.status) == RUNNING, col(Task.node_id) == uuid.UUID(node_id)
        )
        async with self._db.session() as session:
            running = (await session.exec(statement)).all()
        for task in running:
            if task.attempts <= task.retries:
                await self._requeue(task, "re-queued: the node running the task went down")
            else:
                await self.fail(task.id, _node_down_message(task))

    async def _requeue(self, task: Task, reason: str) -> None:
        # Back to its place in the queue (submission order), ready for another attempt.
        await self._transition(
            task.id,
            RUNNING,
            EventType.TASK_REQUEUED,
            status=PENDING,
            node_id=None,
            container_id="",
            started_at=None,
            queued_at=task.queued_at or _now(),
            queue_reason=f"{reason} (attempt {task.attempts} of {task.retries + 1})",
        )

    async def logs(self, task: Task, *, follow: bool, tail: int = 0) -> AsyncGenerator[str, None]:
        """The task's output: kept logs once it ended, live from its node while it runs."""
        async with self._db.session() as session:
            kept = await session.get(TaskLog, task.id)
        if kept is not None:
            lines = kept.content.splitlines(keepends=True)
            for line in lines[-tail:] if tail else lines:
                yield line
            return
        if task.status != RUNNING or task.node_id is None:
            return
        entries = self._agents.get_logs(str(task.node_id), str(task.id), tail=tail, follow=follow)
        async with contextlib.aclosing(entries):
            async for entry in entries:
                yield entry.text + "\n"

    async def remove_container(self, task: Task) -> None:
        """Remove the task's container and data from its node, if it ever had one."""
        if task.node_id is None:
            return
        await self._agents.remove_server(str(task.node_id), str(task.id), delete_data=True)


class _LogTail:
    """The last `limit` bytes of a stream of lines, holding little more than that: a
    line is dropped as soon as the lines after it cover the limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lines: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._dropped = False

    def add(self, line: bytes) -> None:
        self._lines.append(line)
        self._size += len(line)
        while self._size - len(self._lines[0]) >= self._limit:
            self._size -= len(self._lines.popleft())
            self._dropped = True

    def text(self) -> tuple[str, bool]:
        """(the kept text, whether anything before it was cut)."""
        data = b"".join(self._lines)
        truncated = self._dropped or len(data) > self._limit
        if len(data) > self._limit:
            data = data[-self._limit :]
        return data.decode(errors="ignore"), truncated


def _node_down_message(task: Task) -> str:
    message = "the node running the task went down"
    if task.retries:
        return f"{message} (attempt {task.attempts}, no retries left of {task.retries})"
    return message


def _task_id(server_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(server_id)
    except ValueError:
        return None
