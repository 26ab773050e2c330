"""Backups and restores run in the background of the control plane that accepted
them (an API call answers at once, 202); the leader starts scheduled backups.

:class:`BackupRunner` owns every such task: they start only inside
:meth:`BackupRunner.running` (an aiohttp cleanup context) and are cancelled when it
ends. A control plane stopped in the middle leaves its rows `pending` or `running`:
the leader's schedule duty marks those older than `stale_after` failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

from sqlmodel import col, select

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from controlplane.backups.cron import CronError, parse_cron
from controlplane.backups.operations import BackupOperations, BackupProblem
from controlplane.db.tables import Backup, BackupPolicy, Deployment
from controlplane.db.tables.backups import FAILED, PENDING, RUNNING
from controlplane.db.types import utcnow
from controlplane.events.bus import EventType

log = get_logger(__name__)
#: A backup still pending or running this long after it was asked for was lost with
#: the control plane that ran it.
STALE_AFTER = timedelta(hours=7)


class BackupRunner:
    """Starts backups and restores as tasks it owns (see the module docstring)."""

    def __init__(self, operations: BackupOperations) -> None:
        self.operations = operations
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._open = True
        try:
            yield
        finally:
            self._open = False
            await cancel_and_wait(*self._tasks)

    def _spawn(self, name: str, work: Callable[[], Awaitable[object]]) -> None:
        if not self._open:
            raise BackupProblem("shutting_down", "the control plane is stopping")

        async def guarded() -> None:
            try:
                await work()
            except BackupProblem as problem:
                log.info(f"{name}_refused", code=problem.code, reason=str(problem))
            except Exception:
                log.exception(f"{name}_failed")

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start_backup(self, backup_id: uuid.UUID) -> None:
        """Take the pending backup `backup_id` in the background."""
        self._spawn("backup", lambda: self.operations.run_backup(backup_id))

    def start_restore(self, backup: Backup, *, wipe: bool) -> None:
        """Restore `backup` into its slot in the background."""
        self._spawn("restore", lambda: self.operations.restore(backup, wipe=wipe))

    async def idle(self) -> None:
        """Wait until no backup or restore runs (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


class BackupSchedule:
    """The leader's duty: every `interval` seconds start the scheduled backups that are
    due (one per slot) and fail the rows a stopped control plane left behind."""

    def __init__(
        self,
        runner: BackupRunner,
        interval: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.runner, self.interval, self.clock = runner, interval, clock

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def tick(self) -> list[uuid.UUID]:
        """One look: the ids of the backups started."""
        await self._fail_stale()
        started: list[uuid.UUID] = []
        database = self.runner.operations.database
        async with database.session() as session:
            rows = (
                await session.exec(
                    select(BackupPolicy, Deployment)
                    .join(Deployment, col(Deployment.id) == col(BackupPolicy.deployment_id))
                    .where(col(BackupPolicy.schedule).is_not(None))
                )
            ).all()
        now = self.clock()
        for policy, deployment in rows:
            if not _due(policy, now):
                continue
            started += await self._start_for(policy, deployment, now)
        return started

    async def _start_for(
        self, policy: BackupPolicy, deployment: Deployment, now: datetime
    ) -> list[uuid.UUID]:
        backups = [
            Backup(
                deployment_id=deployment.id,
                user_id=deployment.user_id,
                ordinal=ordinal,
                name=f"scheduled-{now:%Y%m%d-%H%M}",
                trigger="schedule",
            )
            for ordinal in range(deployment.replicas)
        ]
        async with self.runner.operations.database.transaction() as session:
            fresh = await session.get(BackupPolicy, policy.deployment_id)
            if fresh is None:
                return []
            fresh.last_scheduled_at = now
            session.add(fresh)
            for backup in backups:
                session.add(backup)
        for backup in backups:
            self.runner.start_backup(backup.id)
        return [b.id for b in backups]

    async def _fail_stale(self) -> None:
        operations = self.runner.operations
        limit = self.clock() - STALE_AFTER
        async with operations.database.session() as session:
            stale = (
                await session.exec(
                    select(Backup).where(
                        col(Backup.state).in_([PENDING, RUNNING]), col(Backup.created_at) < limit
                    )
                )
            ).all()
        for backup in stale:
            backup.state, backup.completed_at = FAILED, self.clock()
            backup.error = "the control plane that ran this backup stopped"
            await operations.record(backup, EventType.BACKUP_FAILED)


def _due(policy: BackupPolicy, now: datetime) -> bool:
    try:
        schedule = parse_cron(policy.schedule or "")
    except CronError:
        return False  # refused by the API; a row written otherwise is skipped
    since = policy.last_scheduled_at or policy.updated_at
    fires = schedule.next_after(since)
    return fires is not None and fires <= now
