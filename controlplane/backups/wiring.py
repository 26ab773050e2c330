"""Puts the backup runner on the application (`BACKUPS`) and its schedule among the
leader's duties. Needs the agent pool (`install_orchestration` first)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from controlplane.agents import AgentPool
from controlplane.backups.operations import BackupOperations
from controlplane.backups.runner import BackupRunner, BackupSchedule
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.events.bus import EventBus
from controlplane.leadership import Duty, Leadership
from controlplane.state import BACKUPS


def install_backups(
    app: web.Application,
    config: ControlPlaneConfig,
    database: Database,
    pool: AgentPool,
    cluster: tuple[EventBus, Leadership],
) -> BackupRunner:
    """Create the runner, register its cleanup context and the schedule duty."""
    bus, leadership = cluster
    runner = BackupRunner(BackupOperations(database, pool, bus))
    app[BACKUPS] = runner

    async def run(_app: web.Application) -> AsyncIterator[None]:
        async with runner.running():
            yield

    app.cleanup_ctx.append(run)
    schedule = BackupSchedule(runner, config.backup_schedule_interval_seconds)
    leadership.add_duty(Duty("backup-schedule", schedule.run))
    return runner
