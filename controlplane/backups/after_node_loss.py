"""The restore hook of slots moved after node loss (controlplane/reconciler/node_loss.py),
with restic: the slot's newest completed backup that the new node can read (a fleet
repository's; a node's own repository is readable on that node only), restored by the
new node's agent (`RestoreBackup`, with `wipe`) into the volume of the slot's
container, which the reconciler created stopped and starts only afterwards.

The agent keeps its confinement of restores: restic writes into a private staging
directory of the agent's, whose entries are then moved into the volume
(agent/backups/volume_backups.py).
"""

from __future__ import annotations

import uuid

from controlplane.agents import AgentError
from controlplane.backups.operations import BackupOperations, BackupProblem, reachable_from
from controlplane.db.tables import Backup
from controlplane.db.tables.backups import COMPLETED
from controlplane.events.bus import EventType
from controlplane.reconciler.node_loss import BackupChoice, RestoreTarget
from protos import agent_pb2 as pb


class LatestBackupOnNewNode:
    """:class:`controlplane.reconciler.node_loss.LatestBackupRestore` through
    `operations`' agents and backup rows."""

    def __init__(self, operations: BackupOperations) -> None:
        self.operations = operations

    async def latest_backup(self, target: RestoreTarget) -> BackupChoice | None:
        found = await self.operations.latest_reachable(
            uuid.UUID(target.deployment_id), target.ordinal, uuid.UUID(target.node_id)
        )
        if found is None or found.completed_at is None:
            return None
        return BackupChoice(str(found.id), found.name, found.completed_at)

    async def restore(self, target: RestoreTarget, backup: BackupChoice) -> None:
        """Restore `backup` into `target`'s volume, replacing what it held (an earlier
        run of the slot on that node may have left files there); `restore_completed`
        or `restore_failed` is recorded on the backup too."""
        async with self.operations.database.session() as session:
            row = await session.get(Backup, uuid.UUID(backup.backup_id))
        if row is None or row.state != COMPLETED or not row.snapshot_id:
            raise BackupProblem("backup_not_found", "the backup was deleted meanwhile")
        if not reachable_from(row.repository, uuid.UUID(target.node_id)):
            raise BackupProblem("backup_unreachable", "the backup is in another node's repository")
        request = pb.RestoreBackupRequest(
            server_id=target.replica_id,
            snapshot_id=row.snapshot_id,
            repository=row.repository or "",
            wipe=True,
        )
        try:
            client = self.operations.pool.client(target.node_id)
            await client.restore_backup(request)
        except AgentError as exc:
            await self.operations.record(
                row,
                EventType.RESTORE_FAILED,
                wipe=True,
                restore_error=exc.message,
                after_node_loss=True,
            )
            raise
        await self.operations.record(
            row, EventType.RESTORE_COMPLETED, wipe=True, restarted=False, after_node_loss=True
        )
