"""Backups on the control plane's side, on a real database (SQLite and PostgreSQL)
with fake agents: outcome on the row and as events, retention through the agent,
the leader's schedule, restores only where the backup is reachable."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from controlplane.agents import AgentError
from controlplane.backups.operations import (
    BackupOperations,
    BackupProblem,
    reachable_from,
    set_locked,
)
from controlplane.backups.runner import STALE_AFTER, BackupRunner, BackupSchedule
from controlplane.db.tables import Backup, BackupPolicy, Replica
from controlplane.db.types import utcnow
from controlplane.events.bus import Event
from tests.controlplane.reconciler_harness import ReconcilerHarness, reconciler_harness


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[ReconcilerHarness]:
    async with reconciler_harness(database_url) as running:
        yield running


async def _placed(harness: ReconcilerHarness, **template: object) -> tuple[str, Replica]:
    node = await harness.add_node("n1")
    deployment = await harness.add_deployment("saves", template=template or None)
    await harness.settle()
    (replica,) = await harness.replicas(deployment)
    assert str(replica.node_id) == node
    return deployment, replica


async def _pending(harness: ReconcilerHarness, deployment: str, **fields: Any) -> Backup:
    backup = Backup(
        deployment_id=uuid.UUID(deployment), user_id=harness.user_id, name="b", **fields
    )
    async with harness.database.transaction() as session:
        session.add(backup)
    return backup


async def _rows(harness: ReconcilerHarness, deployment: str) -> list[Backup]:
    async with harness.database.session() as session:
        found = await session.exec(
            select(Backup).where(col(Backup.deployment_id) == uuid.UUID(deployment))
        )
        return list(found.all())


async def test_backup_completes_with_the_templates_commands(harness: ReconcilerHarness) -> None:
    deployment, replica = await _placed(harness, backup={"before": ["save-off"], "after": ["on"]})
    events = harness.bus.subscribe()
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    backup = await _pending(harness, deployment)
    done = await operations.run_backup(backup.id)
    assert done is not None
    assert (done.state, done.repository) == ("completed", f"node:{replica.node_id}")
    assert done.checksum
    assert done.snapshot_id
    assert done.node_id == replica.node_id
    agent = harness.fleet.agent(str(replica.node_id))
    sent = agent.snapshots[done.snapshot_id]
    assert (list(sent.before_commands), list(sent.after_commands)) == (["save-off"], ["on"])
    event: Event | None = events.get_nowait()
    assert event is not None
    assert (event.type_name, event.data["backup_id"]) == ("backup_completed", str(backup.id))


async def test_a_failed_backup_says_why(harness: ReconcilerHarness) -> None:
    deployment, replica = await _placed(harness)
    agent = harness.fleet.agent(str(replica.node_id))
    agent.refusals["CreateBackup"] = AgentError("failed_precondition", "nothing to back up")
    events = harness.bus.subscribe()
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    done = await operations.run_backup((await _pending(harness, deployment)).id)
    assert done is not None
    assert (done.state, done.error) == ("failed", "nothing to back up")
    event = events.get_nowait()
    assert event is not None
    assert event.type_name == "backup_failed"


async def test_retention_deletes_through_the_agent_and_keeps_locked(
    harness: ReconcilerHarness,
) -> None:
    deployment, replica = await _placed(harness)
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    first = await operations.run_backup((await _pending(harness, deployment, locked=True)).id)
    for _ in range(3):
        await operations.run_backup((await _pending(harness, deployment)).id)
    async with harness.database.transaction() as session:
        session.add(BackupPolicy(deployment_id=uuid.UUID(deployment), keep_last=1))
    deleted = await operations.apply_retention(uuid.UUID(deployment), 0)
    assert len(deleted) == 2
    rows = await _rows(harness, deployment)
    assert first is not None
    assert first.id in {r.id for r in rows}
    assert len(rows) == 2
    agent = harness.fleet.agent(str(replica.node_id))
    assert len(agent.snapshots) == 2
    assert [m for m, _ in agent.calls].count("DeleteBackup") == 2


async def _three_backups(
    harness: ReconcilerHarness, operations: BackupOperations, deployment: str
) -> list[Backup]:
    taken = [await operations.run_backup((await _pending(harness, deployment)).id) for _ in "abc"]
    assert all(b is not None for b in taken)
    return [b for b in taken if b is not None]


async def test_a_lock_taken_while_retention_runs_keeps_the_backup(
    harness: ReconcilerHarness,
) -> None:
    """Retention forgets backups one at a time through the agent (a prune can take
    minutes): a backup locked meanwhile is kept, not forgotten with the rest."""
    deployment, replica = await _placed(harness)
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    oldest, middle, newest = await _three_backups(harness, operations, deployment)
    async with harness.database.transaction() as session:
        session.add(BackupPolicy(deployment_id=uuid.UUID(deployment), keep_last=1))
    agent = harness.fleet.agent(str(replica.node_id))
    agent.hold_deletes = asyncio.Event()
    retention = asyncio.create_task(operations.apply_retention(uuid.UUID(deployment), 0))
    await agent.delete_entered.wait()  # forgetting the oldest
    locked = await set_locked(harness.database, middle.id, True)
    assert locked is not None
    assert locked.locked
    agent.hold_deletes.set()
    assert await retention == [oldest.id]
    rows = {r.id: r for r in await _rows(harness, deployment)}
    assert set(rows) == {middle.id, newest.id}
    assert (rows[middle.id].locked, rows[middle.id].state) == (True, "completed")
    assert middle.snapshot_id in agent.snapshots


async def test_a_backup_being_deleted_cannot_be_locked_and_a_failed_delete_keeps_it(
    harness: ReconcilerHarness,
) -> None:
    """Once a delete has claimed a backup, a lock is refused (409 backup_deleting),
    never reported set on a backup that is then forgotten; a forget the agent refuses
    leaves the backup as it was, lockable again."""
    deployment, replica = await _placed(harness)
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    first, second, _ = await _three_backups(harness, operations, deployment)
    agent = harness.fleet.agent(str(replica.node_id))
    agent.hold_deletes = asyncio.Event()
    deleting = asyncio.create_task(operations.delete(first))
    await agent.delete_entered.wait()
    with pytest.raises(BackupProblem) as refused:
        await set_locked(harness.database, first.id, True)
    assert refused.value.code == "backup_deleting"
    agent.hold_deletes.set()
    await deleting
    assert first.id not in {r.id for r in await _rows(harness, deployment)}
    agent.refusals["DeleteBackup"] = AgentError("internal", "prune failed")
    with pytest.raises(BackupProblem):
        await operations.delete(second)
    kept = await set_locked(harness.database, second.id, True)
    assert kept is not None
    assert (kept.state, kept.locked) == ("completed", True)
    assert second.snapshot_id in agent.snapshots


async def test_restore_only_where_the_backup_is_reachable(harness: ReconcilerHarness) -> None:
    deployment, replica = await _placed(harness)
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    done = await operations.run_backup((await _pending(harness, deployment)).id)
    assert done is not None
    assert await operations.restore(done, wipe=True) is True
    agent = harness.fleet.agent(str(replica.node_id))
    assert agent.restores[-1].wipe
    done.repository = f"node:{uuid.uuid4()}"
    with pytest.raises(BackupProblem) as refused:
        await operations.restore(done, wipe=False)
    assert refused.value.code == "backup_unreachable"
    assert reachable_from("restic:sftp:host:/r", replica.node_id)
    assert not reachable_from(None, replica.node_id)


async def test_schedule_starts_due_backups_once(harness: ReconcilerHarness) -> None:
    deployment, _ = await _placed(harness)
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    runner = BackupRunner(operations)
    now = utcnow()
    async with harness.database.transaction() as session:
        session.add(
            BackupPolicy(
                deployment_id=uuid.UUID(deployment),
                schedule="*/5 * * * *",
                last_scheduled_at=now - timedelta(minutes=6),
            )
        )
    schedule = BackupSchedule(runner, interval=60, clock=lambda: now)
    async with runner.running():
        started = await schedule.tick()
        assert len(started) == 1
        assert await schedule.tick() == []  # not due again until the next 5 minutes
        await runner.idle()
    (row,) = await _rows(harness, deployment)
    assert (row.state, row.trigger) == ("completed", "schedule")


async def test_schedule_fails_backups_a_stopped_control_plane_left(
    harness: ReconcilerHarness,
) -> None:
    deployment, _ = await _placed(harness)
    runner = BackupRunner(BackupOperations(harness.database, harness.pool, harness.bus))
    old = await _pending(harness, deployment, state="running")
    later = utcnow() + STALE_AFTER + timedelta(minutes=1)
    await BackupSchedule(runner, interval=60, clock=lambda: later).tick()
    (row,) = await _rows(harness, deployment)
    assert (row.id, row.state) == (old.id, "failed")
    assert row.error is not None
    assert "stopped" in row.error


async def test_latest_backup_reachable_from_another_node(harness: ReconcilerHarness) -> None:
    """What a move after node loss restores: the newest completed backup the new node
    can read, i.e. in a fleet repository, not in the lost node's own."""
    deployment, replica = await _placed(harness)
    operations = BackupOperations(harness.database, harness.pool, harness.bus)
    other_node = uuid.uuid4()
    fleet = await operations.run_backup((await _pending(harness, deployment)).id)
    assert fleet is not None
    fleet.repository = "restic:sftp:backup@10.0.0.5:/srv/restic"
    async with harness.database.transaction() as session:
        session.add(fleet)
    own = await operations.run_backup((await _pending(harness, deployment)).id)
    assert own is not None
    found = await operations.latest_reachable(uuid.UUID(deployment), 0, other_node)
    assert found is not None
    assert found.id == fleet.id  # the newer one is in the lost node's own repository
    assert replica.node_id is not None
    here = await operations.latest_reachable(uuid.UUID(deployment), 0, replica.node_id)
    assert here is not None
    assert here.id == own.id
    assert await operations.latest_reachable(uuid.UUID(deployment), 1, other_node) is None
