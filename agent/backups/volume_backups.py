"""Backups of this node's server volumes: what the CreateBackup, RestoreBackup and
DeleteBackup rpcs and the backup download do (docs/stateful.md).

A backup is one restic snapshot of a server's volume directory, its files at the
snapshot's root, tagged `encedeus.deployment=`, `encedeus.volume=` and
`encedeus.backup=`. A restore never lets restic write into the volume itself (a
container may have left symbolic links there that restic would follow out of it): the
snapshot is restored into a staging directory of the agent's own, and its top-level
entries are then moved into the volume, each replacing the entry of the same name,
without ever following a link in the volume (:mod:`agent.backups.placing`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from agent.backups.placing import LOST_AND_FOUND, move_into
from agent.backups.restic import ResticError, ResticRepository
from agent.fleet.spec import volume_name
from agent.fleet.supervisor import Supervisor
from agent.runtime import NotRunning
from common.logging import get_logger
from protos import agent_pb2 as pb

log = get_logger(__name__)
DEPLOYMENT_LABEL = "encedeus.deployment"
_RESTIC_TIME = re.compile(r"^(.*?T[0-9:]+)(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")


class BackupUnreachable(Exception):
    """The snapshot lives in a repository this node does not use."""


class NothingToBackUp(Exception):
    """The volume holds no file (restic keeps no empty snapshot)."""


class VolumeBackups:
    """Backups of the volumes of `supervisor`'s servers in `repository`."""

    def __init__(self, supervisor: Supervisor, repository: ResticRepository) -> None:
        self.supervisor, self.repository = supervisor, repository
        self._staging = supervisor.volumes.agent_dir / "restores"

    def check_repository(self, repository: str) -> None:
        """BackupUnreachable unless `repository` names this node's repository."""
        if repository != self.repository.identity:
            raise BackupUnreachable(
                f"the backup is in repository {repository!r}; this node uses "
                f"{self.repository.identity!r}"
            )

    async def create(self, request: pb.CreateBackupRequest) -> pb.BackupResult:
        """Snapshot the server's volume, with its console commands around it."""
        server = self.supervisor.get(request.server_id)
        volume = volume_name(server.spec)
        directory = self.supervisor.volumes.path(volume)
        tags = [
            f"encedeus.deployment={server.spec.labels.get(DEPLOYMENT_LABEL, '')}",
            f"encedeus.volume={volume}",
            f"encedeus.backup={request.backup_id}",
        ]
        excludes = [_exclude(directory, p) for p in (*request.ignore, f"/{LOST_AND_FOUND}")]
        await self._console(request.server_id, request.before_commands)
        try:
            if request.settle_ms:
                await asyncio.sleep(request.settle_ms / 1000)
            summary = await self.repository.backup(directory, tags=tags, excludes=excludes)
        except ResticError as exc:
            if "snapshot is empty" in str(exc):
                raise NothingToBackUp("the volume holds nothing to back up") from exc
            raise
        finally:
            await self._console(request.server_id, request.after_commands)
        snapshot = summary.snapshot
        log.info("backup_created", server=request.server_id, snapshot=snapshot.id[:8])
        return pb.BackupResult(
            snapshot_id=snapshot.id,
            repository=self.repository.identity,
            size_bytes=summary.size_bytes,
            files=summary.files,
            checksum=f"sha256:{snapshot.tree}",
            time_ms=_time_ms(snapshot.time),
        )

    async def _console(self, server_id: str, lines: Sequence[str]) -> None:
        """Write `lines` to the server's console, through the console command path;
        nothing when it does not run."""
        for line in lines:
            try:
                await self.supervisor.send_command(server_id, line)
            except NotRunning:
                return

    async def restore(self, request: pb.RestoreBackupRequest) -> pb.RestoreBackupResponse:
        """Put the snapshot's files back (see the module docstring); the server is
        stopped meanwhile and started again when it ran."""
        self.check_repository(request.repository)
        server = self.supervisor.get(request.server_id)
        directory = self.supervisor.volumes.path(volume_name(server.spec))
        staging = self._staging / secrets.token_hex(8)
        await asyncio.to_thread(_make_private_dir, staging)
        try:
            async with self.supervisor.held_stopped(request.server_id) as running:
                await self.repository.restore(request.snapshot_id, staging)
                await asyncio.to_thread(move_into, staging, directory, request.wipe)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        log.info("backup_restored", server=request.server_id, snapshot=request.snapshot_id[:8])
        return pb.RestoreBackupResponse(restarted=running)

    async def delete(self, request: pb.DeleteBackupRequest) -> pb.DeleteBackupResponse:
        """Forget the snapshot and prune what nothing else uses."""
        self.check_repository(request.repository)
        await self.repository.forget(request.snapshot_id)
        return pb.DeleteBackupResponse(deleted=True)


def _exclude(directory: Path, pattern: str) -> str:
    """A deployment's ignore pattern for restic: "/x" means x at the volume's top."""
    return f"{directory}{pattern}" if pattern.startswith("/") else pattern


def _time_ms(stamp: str) -> int:
    """restic's RFC 3339 time (nanoseconds, which fromisoformat of 3.11 refuses)."""
    found = _RESTIC_TIME.match(stamp)
    if found is None:
        return 0
    head, fraction, zone = found.groups()
    zone = "+00:00" if zone == "Z" else zone
    parsed = datetime.fromisoformat(f"{head}{(fraction or '.0')[:7]}{zone}")
    return int(parsed.timestamp() * 1000)


def _make_private_dir(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700)
