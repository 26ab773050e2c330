"""A slot moved because its node was lost gets its data back from a backup, or says
that it started without it (docs/stateful.md, "Node loss").

The decision to move is pure (`decide`: `AddReplica.restore`); the replica row then
carries `restore_state = "pending"` and its container is created *stopped* on the new
node. The pass then asks for `RestoreData`, and :class:`SlotRestore` runs the restore
in a task of its own, off the pass (a restore may take minutes): it asks the
:class:`LatestBackupRestore` hook for the newest backup of the slot reachable from
the new node, marks the row `restoring` (naming the backup and its age), has the hook
restore it into the stopped container's volume, and records the outcome — `restored`,
`empty` (none to restore) or `restore_failed` (retried with a growing delay; the
container stays stopped meanwhile) — on the row together with an event, in one
transaction. Until the outcome is `restored` or `empty` the reconciler does not start
the container: a move never starts a server without its data silently.

**The hook is where backups plug in.** :class:`NoBackups` (the default) has none;
the application wires controlplane/backups/after_node_loss.py (restic through the
new node's agent) with `reconciler.restore.hook`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import update
from sqlmodel import col

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from controlplane.agents import AgentError
from controlplane.db.engine import Database
from controlplane.db.tables import Deployment, Replica
from controlplane.db.types import utcnow
from controlplane.events.bus import Event, EventBus, EventType
from controlplane.placement import Fence
from controlplane.reconciler.model import (
    RESTORE_FAILED,
    RESTORE_PENDING,
    RESTORED,
    RESTORING,
    STARTED_EMPTY,
    BackoffPolicy,
)

__all__ = [
    "RESTORE_PENDING",
    "BackupChoice",
    "LatestBackupRestore",
    "NoBackups",
    "RestoreTarget",
    "SlotRestore",
]
log = get_logger(__name__)
NO_BACKUP = "no completed backup of this slot that its new node can read"
#: Delay before a failed restore is tried again: 5 s, doubling, at most 5 minutes.
RETRY = BackoffPolicy(base=5.0, cap=300.0)


@dataclass(frozen=True, slots=True)
class RestoreTarget:
    """Where a moved slot's data must be restored: the volume of the stopped
    container `replica_id` on `node_id`."""

    deployment_id: str
    ordinal: int
    replica_id: str
    volume_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class BackupChoice:
    """The backup a restore puts back: its id, name and when it was taken."""

    backup_id: str
    name: str
    taken_at: datetime

    def describe(self, now: datetime) -> str:
        """'backup 'NAME' (ID8) taken WHEN, AGE old' (its age at `now`)."""
        age = format_age((now - self.taken_at).total_seconds())
        return (
            f"backup {self.name!r} ({self.backup_id[:8]}) taken "
            f"{self.taken_at.isoformat(timespec='seconds')}, {age} old"
        )


class LatestBackupRestore(Protocol):
    """Finds and restores a slot's newest backup on the node it moved to."""

    async def latest_backup(self, target: RestoreTarget) -> BackupChoice | None:
        """The newest completed backup of the slot that `target.node_id` can read
        (None: there is none)."""
        ...

    async def restore(self, target: RestoreTarget, backup: BackupChoice) -> None:
        """Put `backup` into the volume of the stopped container `target.replica_id`
        on `target.node_id` (what the volume held before goes). AgentError (or a
        backups problem) when it cannot: the restore is tried again later."""
        ...


class NoBackups:
    """No backups to restore (the default until a backup engine is wired)."""

    async def latest_backup(self, target: RestoreTarget) -> BackupChoice | None:
        return None

    async def restore(self, target: RestoreTarget, backup: BackupChoice) -> None:
        raise AgentError("unimplemented", "no backup engine is wired")


def format_age(seconds: float) -> str:
    """A short human age: '42 s', '3 min 5 s', '2 h 10 min', '3 d 4 h'."""
    whole = max(0, int(seconds))
    for unit, size, smaller, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size} {unit}" + (f" {rest} {smaller}" if rest else "")
    return f"{whole} s"


class SlotRestore:
    """Runs the restores of slots moved after node loss, one task per replica, off the
    reconciler's passes (see the module docstring). `on_finished` runs when a restore
    has an outcome (the reconciler's wake-up: the slot may start now)."""

    def __init__(
        self,
        database: Database,
        hook: LatestBackupRestore | None = None,
        *,
        bus: EventBus | None = None,
        fence: Fence | None = None,
        on_finished: Callable[[], None] | None = None,
        retry: BackoffPolicy = RETRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database, self.bus, self._fence = database, bus, fence
        self.hook: LatestBackupRestore = hook or NoBackups()
        self.retry, self._clock = retry, clock
        self._on_finished = on_finished
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._deployment_of: dict[str, str] = {}  # replica -> deployment, while running
        self._done: set[str] = set()  # replicas with an outcome (a cached row may lag)
        self._failures: dict[str, tuple[int, float]] = {}  # replica -> (count, retry at)
        self.errors: dict[str, str] = {}
        """The last failed restore of each replica still waiting for its data."""

    def request(self, replica: Replica, deployment: Deployment, node_id: str, now: float) -> None:
        """Start restoring `replica`'s data on `node_id` unless a restore of it runs,
        has finished, or failed and its retry is not due at `now`."""
        replica_id = str(replica.id)
        if replica_id in self._tasks or replica_id in self._done:
            return
        failed = self._failures.get(replica_id)
        if failed is not None and now < failed[1]:
            return
        target = RestoreTarget(
            str(deployment.id), replica.ordinal, replica_id, str(replica.slot_volume), node_id
        )
        task = asyncio.create_task(self._run(replica, deployment, target), name="restore")
        self._tasks[replica_id] = task
        self._deployment_of[replica_id] = target.deployment_id
        task.add_done_callback(lambda _: self._ended(replica_id))

    def next_retry(self, now: float) -> float | None:
        """When the earliest failed restore waiting after `now` may be tried again
        (None: none waits)."""
        return min((at for _, at in self._failures.values() if at > now), default=None)

    def keep_only(self, replica_ids: Collection[str]) -> None:
        """Forget what is known of replicas that no longer exist."""
        self._done.intersection_update(replica_ids)
        for known in (self._failures, self.errors):
            for gone in [r for r in known if r not in replica_ids]:
                del known[gone]

    async def cancel(self) -> None:
        """Cancel the restores still running (the reconciler stops)."""
        await cancel_and_wait(*self._tasks.values())

    async def cancel_of(self, deployment_id: str) -> None:
        """Cancel the restores of `deployment_id`'s slots (it is being deleted: its
        containers must not wait behind a restore that may take minutes)."""
        await cancel_and_wait(
            *(t for r, t in self._tasks.items() if self._deployment_of.get(r) == deployment_id)
        )

    async def idle(self) -> None:
        """Wait until no restore runs (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks.values()))

    def _ended(self, replica_id: str) -> None:
        self._tasks.pop(replica_id, None)
        self._deployment_of.pop(replica_id, None)
        if self._on_finished is not None:
            self._on_finished()

    async def _run(self, replica: Replica, deployment: Deployment, target: RestoreTarget) -> None:
        choice: BackupChoice | None = None
        try:
            choice = await self.hook.latest_backup(target)
            if choice is None:
                note = f"its node was lost and it started without its data: {NO_BACKUP}"
                await self._record(replica, deployment, target, STARTED_EMPTY, note)
            else:
                described = choice.describe(utcnow())
                note = f"its node was lost: restoring {described}"
                await self._record(replica, deployment, target, RESTORING, note, choice)
                await self.hook.restore(target, choice)
                note = f"its node was lost: restored {choice.describe(utcnow())}"
                await self._record(replica, deployment, target, RESTORED, note, choice)
            self._done.add(target.replica_id)
            self._failures.pop(target.replica_id, None)
            self.errors.pop(target.replica_id, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(replica, deployment, target, choice, exc)

    async def _failed(
        self,
        replica: Replica,
        deployment: Deployment,
        target: RestoreTarget,
        choice: BackupChoice | None,
        exc: Exception,
    ) -> None:
        message = exc.message if isinstance(exc, AgentError) else str(exc) or type(exc).__name__
        count = self._failures.get(target.replica_id, (0, 0.0))[0] + 1
        delay = self.retry.delay(count)
        self._failures[target.replica_id] = (count, self._clock() + delay)
        what = f"restoring {choice.describe(utcnow())}" if choice else "finding its latest backup"
        note = (
            f"its node was lost and {what} failed: {message}; it stays stopped and the "
            f"restore is tried again in {format_age(delay)}"
        )[:1000]
        self.errors[target.replica_id] = note
        log.warning("restore_after_node_loss_failed", replica_id=target.replica_id, error=message)
        try:
            await self._record(replica, deployment, target, RESTORE_FAILED, note, choice)
        except Exception:
            log.exception("restore_failure_not_recorded", replica_id=target.replica_id)

    async def _record(
        self,
        replica: Replica,
        deployment: Deployment,
        target: RestoreTarget,
        state: str,
        note: str,
        choice: BackupChoice | None = None,
    ) -> None:
        """Write the row's new state and (but for `restoring`) its event, together."""
        async with self.database.transaction() as session:
            if self._fence is not None:
                await self._fence(session)
            await session.exec(
                update(Replica)
                .where(col(Replica.id) == uuid.UUID(target.replica_id))
                .values(restore_state=state, restore_note=note)
            )
            kind = _EVENTS.get(state)
            if self.bus is not None and kind is not None:
                event = _event(kind, deployment, target, note, choice)
                await self.bus.record(session, event)
        replica.restore_state, replica.restore_note = state, note


_EVENTS = {
    RESTORED: EventType.REPLICA_RESTORED,
    STARTED_EMPTY: EventType.REPLICA_STARTED_EMPTY,
    RESTORE_FAILED: EventType.REPLICA_RESTORE_FAILED,
}


def _event(
    kind: EventType,
    deployment: Deployment,
    target: RestoreTarget,
    note: str,
    choice: BackupChoice | None,
) -> Event:
    data: dict[str, Any] = {
        "app_name": deployment.app_name,
        "ordinal": target.ordinal,
        "replica_id": target.replica_id,
        "volume_id": target.volume_id,
        "node_id": target.node_id,
        "message": note,
        "backup_id": choice.backup_id if choice else None,
    }
    if choice is not None:
        data["backup_name"] = choice.name
        data["backup_taken_at"] = choice.taken_at.isoformat()
        data["backup_age_seconds"] = int((utcnow() - choice.taken_at).total_seconds())
    return Event(
        kind, owner_id=str(deployment.user_id), deployment_id=target.deployment_id, data=data
    )
