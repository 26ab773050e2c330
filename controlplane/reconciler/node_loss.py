"""A slot moved because its node was lost gets its data back from a backup, or says
that it started without it (docs/stateful.md, "Node loss").

The decision to move is pure (`decide`: `AddReplica.restore`); the replica row then
carries `restore_state = "pending"` until its first create. Before that create
:class:`SlotRestore` asks the :class:`LatestBackupRestore` hook to restore the newest
backup of the slot's volume reachable from the new node, and records the outcome on
the row (`restored` / `empty`, with a note) together with an event, in one
transaction: a move never starts a server without its data silently.

**The hook is where backups plug in.** :class:`NoBackups` (the default) has none to
restore; the backups work replaces it with one that runs restic on the new node
(`Reconciler(latest_backup=...)`, wired in controlplane/reconciler/wiring.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import update
from sqlmodel import col

from controlplane.db.engine import Database
from controlplane.db.tables import Deployment, Replica
from controlplane.events.bus import Event, EventBus, EventType
from controlplane.placement import Fence

RESTORE_PENDING = "pending"
RESTORED = "restored"
STARTED_EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class RestoreTarget:
    """Where a moved slot's data must be restored: its volume on `node_id`."""

    deployment_id: str
    ordinal: int
    replica_id: str
    volume_id: str
    node_id: str


@dataclass(frozen=True, slots=True)
class RestoreOutcome:
    """What the hook did: `restored` a backup (its id and when it was taken), or not,
    with `reason` saying why (shown to the owner)."""

    restored: bool
    reason: str = ""
    backup_id: str = ""
    backup_taken_at: datetime | None = None


class LatestBackupRestore(Protocol):
    """Restores a slot's newest backup on the node it moved to."""

    async def restore_latest_backup(self, target: RestoreTarget) -> RestoreOutcome:
        """Put the newest backup of `target.volume_id` that `target.node_id` can reach
        into that volume there, before the slot's container exists. restored=False
        (with the reason) when there is none; AgentError when a restore failed (the
        create waits and is tried again, like any failed agent call)."""
        ...


class NoBackups:
    """No backups to restore (the default until a backup engine is wired)."""

    async def restore_latest_backup(self, target: RestoreTarget) -> RestoreOutcome:
        return RestoreOutcome(restored=False, reason="no backup to restore")


def restore_note(outcome: RestoreOutcome) -> str:
    """The owner's line about a moved slot's data."""
    if outcome.restored:
        taken = f" taken {outcome.backup_taken_at.isoformat()}" if outcome.backup_taken_at else ""
        return f"its node was lost: restored backup {outcome.backup_id}{taken}"
    return f"its node was lost and it started without its data: {outcome.reason}"


class SlotRestore:
    """Runs the hook before the first create of a replica placed after node loss."""

    def __init__(
        self,
        database: Database,
        hook: LatestBackupRestore | None = None,
        *,
        bus: EventBus | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.database, self.bus, self._fence = database, bus, fence
        self.hook: LatestBackupRestore = hook or NoBackups()

    async def before_create(self, replica: Replica, deployment: Deployment, node_id: str) -> None:
        """Restore `replica`'s data when its row asks for it, and record the outcome
        (the cached `replica` row too); nothing for any other replica."""
        if replica.restore_state != RESTORE_PENDING:
            return
        target = RestoreTarget(
            str(deployment.id), replica.ordinal, str(replica.id), str(replica.slot_volume), node_id
        )
        outcome = await self.hook.restore_latest_backup(target)
        state, note = (RESTORED if outcome.restored else STARTED_EMPTY), restore_note(outcome)
        async with self.database.transaction() as session:
            if self._fence is not None:
                await self._fence(session)
            await session.exec(
                update(Replica)
                .where(col(Replica.id) == uuid.UUID(target.replica_id))
                .values(restore_state=state, restore_note=note)
            )
            if self.bus is not None:
                await self.bus.record(session, _event(deployment, target, outcome, note))
        replica.restore_state, replica.restore_note = state, note


def _event(
    deployment: Deployment, target: RestoreTarget, outcome: RestoreOutcome, note: str
) -> Event:
    kind = EventType.REPLICA_RESTORED if outcome.restored else EventType.REPLICA_STARTED_EMPTY
    data = {
        "app_name": deployment.app_name,
        "ordinal": target.ordinal,
        "replica_id": target.replica_id,
        "volume_id": target.volume_id,
        "node_id": target.node_id,
        "message": note,
        "backup_id": outcome.backup_id or None,
    }
    return Event(
        kind, owner_id=str(deployment.user_id), deployment_id=target.deployment_id, data=data
    )
