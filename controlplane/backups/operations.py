"""What a backup, a restore and a delete do on the control plane's side: find the
slot's node, call its agent (controlplane/agents), record the outcome on the row and
as an event in the same transaction (`backup_completed`, `backup_failed`,
`restore_completed`, `restore_failed`), and apply the deployment's retention after a
backup completed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select, update

from common.logging import get_logger
from controlplane.agents import AgentClient, AgentError, AgentPool
from controlplane.backups.retention import BackupAge, Retention, expired
from controlplane.db.engine import Database
from controlplane.db.tables import Backup, BackupPolicy, Deployment, Replica
from controlplane.db.tables.backups import COMPLETED, DELETING, FAILED, RUNNING
from controlplane.db.types import utcnow
from controlplane.events.bus import Event, EventBus, EventType
from protos import agent_pb2 as pb

log = get_logger(__name__)
NODE_REPOSITORY = "node:"


class BackupProblem(Exception):
    """The operation cannot be done now; `code` says why (stable snake_case)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def reachable_from(repository: str | None, node_id: uuid.UUID | None) -> bool:
    """Whether a backup in `repository` can be read on `node_id`: a node's own
    repository only there, a fleet repository everywhere (every agent of a fleet
    is configured with the same one)."""
    if not repository or node_id is None:
        return False
    if repository.startswith(NODE_REPOSITORY):
        return repository == f"{NODE_REPOSITORY}{node_id}"
    return True


@dataclass(frozen=True, slots=True)
class SlotOnNode:
    """A slot's current replica and the client of its node's agent."""

    replica: Replica
    client: AgentClient


def backup_event(kind: EventType, backup: Backup, **data: Any) -> Event:
    """The event announcing `backup`'s outcome."""
    return Event(
        kind,
        owner_id=str(backup.user_id),
        deployment_id=str(backup.deployment_id),
        node_id=str(backup.node_id) if backup.node_id else None,
        data={
            "backup_id": str(backup.id),
            "name": backup.name,
            "ordinal": backup.ordinal,
            "state": backup.state,
            "size_bytes": backup.size_bytes,
            "checksum": backup.checksum,
            "error": backup.error,
            **data,
        },
    )


class BackupOperations:
    """Backups through the agents of `pool`, recorded in `database` and on `bus`."""

    def __init__(self, database: Database, pool: AgentPool, bus: EventBus | None) -> None:
        self.database, self.pool, self.bus = database, pool, bus

    def _client(self, node_id: uuid.UUID | None) -> AgentClient:
        if node_id is None or self.pool.state(str(node_id)) != "ready":
            raise BackupProblem("agent_unavailable", "the node is not connected now")
        try:
            return self.pool.client(str(node_id))
        except AgentError as exc:
            raise BackupProblem("agent_unavailable", str(exc)) from exc

    async def slot(self, deployment_id: uuid.UUID, ordinal: int) -> SlotOnNode:
        """The slot's replica on its node, or BackupProblem."""
        async with self.database.session() as session:
            replica = (
                await session.exec(
                    select(Replica).where(
                        col(Replica.deployment_id) == deployment_id, col(Replica.ordinal) == ordinal
                    )
                )
            ).first()
        if replica is None or replica.node_id is None:
            raise BackupProblem("replica_not_placed", f"slot {ordinal} runs on no node now")
        return SlotOnNode(replica, self._client(replica.node_id))

    async def record(self, backup: Backup, kind: EventType, **data: Any) -> None:
        async with self.database.transaction() as session:
            session.add(backup)
            if self.bus is not None:
                await self.bus.record(session, backup_event(kind, backup, **data))

    async def run_backup(self, backup_id: uuid.UUID) -> Backup | None:
        """Take the backup of the pending row `backup_id`; its outcome is on the row."""
        async with self.database.session() as session:
            backup = await session.get(Backup, backup_id)
            deployment = await session.get(Deployment, backup.deployment_id) if backup else None
            policy = await session.get(BackupPolicy, backup.deployment_id) if backup else None
        if backup is None or deployment is None:
            return None  # deleted meanwhile
        try:
            slot = await self.slot(backup.deployment_id, backup.ordinal)
        except BackupProblem as problem:
            return await self._failed(backup, str(problem))
        backup.state, backup.node_id = RUNNING, slot.replica.node_id
        backup.volume_id = slot.replica.volume_id
        async with self.database.transaction() as session:
            session.add(backup)
        request = backup_request(backup, slot.replica, deployment, policy)
        try:
            result = await slot.client.create_backup(request)
        except AgentError as exc:
            return await self._failed(backup, exc.message)
        backup.state, backup.completed_at = COMPLETED, utcnow()
        backup.repository, backup.snapshot_id = result.repository, result.snapshot_id
        backup.size_bytes, backup.files = result.size_bytes, result.files
        backup.checksum = result.checksum
        await self.record(backup, EventType.BACKUP_COMPLETED)
        await self.apply_retention(backup.deployment_id, backup.ordinal)
        return backup

    async def _failed(self, backup: Backup, error: str) -> Backup:
        backup.state, backup.error, backup.completed_at = FAILED, error[:1000], utcnow()
        await self.record(backup, EventType.BACKUP_FAILED)
        return backup

    async def restore(self, backup: Backup, *, wipe: bool) -> bool:
        """Put `backup` back into its slot's volume; whether the server was started
        again. BackupProblem when it cannot (recorded as `restore_failed`)."""
        try:
            slot = await self.slot(backup.deployment_id, backup.ordinal)
            if not reachable_from(backup.repository, slot.replica.node_id):
                raise BackupProblem(
                    "backup_unreachable", "the backup is in another node's repository"
                )
            request = pb.RestoreBackupRequest(
                server_id=str(slot.replica.id),
                snapshot_id=backup.snapshot_id or "",
                repository=backup.repository or "",
                wipe=wipe,
            )
            answer = await slot.client.restore_backup(request)
        except BackupProblem as problem:
            await self.record(
                backup, EventType.RESTORE_FAILED, wipe=wipe, restore_error=str(problem)
            )
            raise
        except AgentError as exc:
            await self.record(
                backup, EventType.RESTORE_FAILED, wipe=wipe, restore_error=exc.message
            )
            raise BackupProblem(exc.code, exc.message) from exc
        await self.record(
            backup, EventType.RESTORE_COMPLETED, wipe=wipe, restarted=answer.restarted
        )
        return answer.restarted

    async def _restore_failed(self, backup: Backup, wipe: bool, error: str) -> None:
        await self.record(backup, EventType.RESTORE_FAILED, wipe=wipe, restore_error=error)

    async def delete(self, backup: Backup) -> None:
        """Forget the snapshot (when there is one) in its repository, then the row.

        The row is first claimed `deleting` in one conditional UPDATE, only while it is
        unlocked and still in the state `backup` was read in (completed or failed):
        a lock set before the claim wins (BackupProblem `backup_locked`, nothing
        forgotten), a lock asked for after it is refused (see :func:`set_locked`). A
        forget that fails puts the row back as it was."""
        await self._claim_for_deletion(backup)
        try:
            if backup.snapshot_id and backup.repository:
                await self._forget(backup)
        except BaseException:
            async with self.database.transaction() as session:
                await session.exec(
                    update(Backup).where(col(Backup.id) == backup.id).values(state=backup.state)
                )
            raise
        async with self.database.transaction() as session:
            row = await session.get(Backup, backup.id)
            if row is not None:
                await session.delete(row)

    async def _claim_for_deletion(self, backup: Backup) -> None:
        if backup.state not in (COMPLETED, FAILED):
            raise BackupProblem("backup_in_progress", "the backup is still being taken")
        async with self.database.transaction() as session:
            claimed = await session.exec(
                update(Backup)
                .where(
                    col(Backup.id) == backup.id,
                    col(Backup.state) == backup.state,
                    col(Backup.locked).is_(False),
                )
                .values(state=DELETING)
            )
        if claimed.rowcount != 1:
            raise BackupProblem("backup_locked", "the backup is locked (or changed meanwhile)")

    async def _forget(self, backup: Backup) -> None:
        node_id = backup.node_id
        if (
            not reachable_from(backup.repository, node_id)
            or self.pool.state(str(node_id)) != "ready"
        ):
            try:
                node_id = (await self.slot(backup.deployment_id, backup.ordinal)).replica.node_id
            except BackupProblem:
                node_id = None
        if not reachable_from(backup.repository, node_id):
            raise BackupProblem("agent_unavailable", "no node that holds the backup is connected")
        request = pb.DeleteBackupRequest(
            snapshot_id=backup.snapshot_id or "", repository=backup.repository or ""
        )
        try:
            await self._client(node_id).delete_backup(request)
        except AgentError as exc:
            raise BackupProblem("agent_error", exc.message) from exc

    async def latest_reachable(
        self, deployment_id: uuid.UUID, ordinal: int, node_id: uuid.UUID
    ) -> Backup | None:
        """The slot's newest completed backup that `node_id` can read (a fleet
        repository's, or that node's own): what a move after node loss restores. Its
        age is `utcnow() - completed_at`."""
        async with self.database.session() as session:
            rows = (
                await session.exec(
                    select(Backup)
                    .where(
                        col(Backup.deployment_id) == deployment_id,
                        col(Backup.ordinal) == ordinal,
                        col(Backup.state) == COMPLETED,
                    )
                    .order_by(col(Backup.completed_at).desc())
                )
            ).all()
        return next((b for b in rows if reachable_from(b.repository, node_id)), None)

    async def apply_retention(self, deployment_id: uuid.UUID, ordinal: int) -> list[uuid.UUID]:
        """Delete the slot's completed backups the policy lets go; the ids deleted
        (a backup whose node is away now stays for the next time)."""
        async with self.database.session() as session:
            policy = await session.get(BackupPolicy, deployment_id)
            if policy is None:
                return []
            rows = (
                await session.exec(
                    select(Backup).where(
                        col(Backup.deployment_id) == deployment_id,
                        col(Backup.ordinal) == ordinal,
                        col(Backup.state) == COMPLETED,
                    )
                )
            ).all()
        retention = Retention(policy.keep_last, policy.keep_daily, policy.keep_weekly)
        ages = [BackupAge(str(b.id), b.completed_at or b.created_at, b.locked) for b in rows]
        by_id = {str(b.id): b for b in rows}
        deleted: list[uuid.UUID] = []
        for backup_id in expired(ages, retention):
            try:
                await self.delete(by_id[backup_id])
            except BackupProblem as problem:
                log.info("retention_postponed", backup=backup_id, reason=str(problem))
                continue
            deleted.append(by_id[backup_id].id)
        return deleted


async def set_locked(database: Database, backup_id: uuid.UUID, locked: bool) -> Backup | None:
    """Lock or unlock the backup; None when it is gone. BackupProblem
    `backup_deleting` when a delete has claimed it (one conditional UPDATE, so a
    lock is never reported set on a backup being forgotten)."""
    async with database.transaction() as session:
        changed = await session.exec(
            update(Backup)
            .where(col(Backup.id) == backup_id, col(Backup.state) != DELETING)
            .values(locked=locked)
        )
        row = await session.get(Backup, backup_id)
    if row is not None and changed.rowcount != 1:
        raise BackupProblem("backup_deleting", "the backup is being deleted")
    return row


def backup_request(
    backup: Backup, replica: Replica, deployment: Deployment, policy: BackupPolicy | None
) -> pb.CreateBackupRequest:
    """The agent's request: the policy's ignore patterns and commands, or the
    template's commands when the policy names none."""
    commands = policy.commands if policy is not None and policy.commands is not None else None
    if commands is None:
        commands = (deployment.template or {}).get("backup") or {}
    return pb.CreateBackupRequest(
        server_id=str(replica.id),
        backup_id=str(backup.id),
        ignore=list(policy.ignore) if policy is not None else [],
        before_commands=list(commands.get("before", [])),
        after_commands=list(commands.get("after", [])),
        settle_ms=int(commands.get("settle_seconds", 0)) * 1000,
    )
