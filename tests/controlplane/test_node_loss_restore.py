"""A slot moved after node loss gets its latest reachable backup through the restic
hook (controlplane/backups/after_node_loss.py), on a real database with fake agents
that share a fleet repository: restored before it first starts, with the backup's age;
none reachable: empty; a failed restore keeps it stopped and says so, then is retried;
a long restore never holds the reconciler's passes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from controlplane.agents import AgentError
from controlplane.backups.after_node_loss import LatestBackupOnNewNode
from controlplane.backups.operations import BackupOperations
from controlplane.db.tables import Backup
from controlplane.events.bus import Event, Subscription
from controlplane.reconciler.model import BackoffPolicy
from tests.controlplane.reconciler_harness import ReconcilerHarness, reconciler_harness

FLEET = "restic:sftp:backup@127.0.0.1:/srv/restic"


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[ReconcilerHarness]:
    async with reconciler_harness(database_url) as running:
        running.reconciler.restore.hook = LatestBackupOnNewNode(
            BackupOperations(running.database, running.pool, running.bus)
        )
        yield running


async def _backed_up_then_lost(
    harness: ReconcilerHarness, *, fleet: bool = True
) -> tuple[str, str, str, Backup]:
    """n1 runs the slot and backs it up (into a fleet repository n2 shares, or its
    own); then n1 goes silent."""
    n1 = await harness.add_node("n1")
    deployment_id = await harness.add_deployment("world", replicas=1)
    await harness.settle()
    n2 = await harness.add_node("n2")
    first, second = harness.fleet.agent(n1), harness.fleet.agent(n2)
    if fleet:
        first.repository = second.repository = FLEET
        second.snapshots = first.snapshots  # one repository
    backup = Backup(deployment_id=uuid.UUID(deployment_id), user_id=harness.user_id, name="pre")
    async with harness.database.transaction() as session:
        session.add(backup)
    operations = BackupOperations(harness.database, harness.pool, None)
    done = await operations.run_backup(backup.id)
    assert done is not None
    assert done.state == "completed"
    first.silent = True
    await harness.until(lambda: harness.pool.state(n1) == "down")
    return n1, n2, deployment_id, done


def _events(subscription: Subscription, kind: str) -> list[Event]:
    found: list[Event] = []
    while (event := subscription.get_nowait()) is not None:
        found.append(event)
    return [e for e in found if e.type == kind]


async def test_a_fleet_backup_is_restored_before_the_slot_starts(
    harness: ReconcilerHarness,
) -> None:
    events = harness.bus.subscribe()
    _, n2, deployment_id, backup = await _backed_up_then_lost(harness)
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    target = harness.fleet.agent(n2)
    (restore,) = target.restores
    assert (restore.server_id, restore.snapshot_id, restore.wipe) == (
        str(row.id),
        backup.snapshot_id,
        True,
    )
    calls = [c for c in target.calls if c[1] == str(row.id)]
    assert [c[0] for c in calls][:3] == ["CreateServer", "RestoreBackup", "StartServer"]
    assert target.running() == {str(row.id)}
    assert row.restore_state == "restored"
    assert f"restored backup 'pre' ({str(backup.id)[:8]})" in (row.restore_note or "")
    assert " s old" in (row.restore_note or "")
    (event,) = _events(events, "replica_restored")
    assert event.data["backup_id"] == str(backup.id)
    assert event.data["backup_age_seconds"] >= 0


async def test_a_backup_only_the_lost_node_could_read_means_it_starts_empty(
    harness: ReconcilerHarness,
) -> None:
    events = harness.bus.subscribe()
    _, n2, deployment_id, _ = await _backed_up_then_lost(harness, fleet=False)
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    assert harness.fleet.agent(n2).restores == []
    assert harness.fleet.agent(n2).running() == {str(row.id)}
    assert row.restore_state == "empty"
    assert "no completed backup of this slot that its new node can read" in (row.restore_note or "")
    assert len(_events(events, "replica_started_empty")) == 1


async def test_a_failed_restore_keeps_the_slot_stopped_and_says_so_then_retries(
    harness: ReconcilerHarness,
) -> None:
    harness.reconciler.restore.retry = BackoffPolicy(base=0.2, cap=0.2)
    events = harness.bus.subscribe()
    _, n2, deployment_id, _ = await _backed_up_then_lost(harness)
    target = harness.fleet.agent(n2)
    target.refusals["RestoreBackup"] = AgentError("internal", "restic: repository locked")
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    assert target.running() == set()  # never started without its data
    assert row.restore_state == "restore_failed"
    assert "restic: repository locked" in (row.restore_note or "")
    assert "it stays stopped" in (row.restore_note or "")
    (event,) = _events(events, "replica_restore_failed")
    assert "repository locked" in event.data["message"]
    deployment = await harness.deployment(deployment_id)
    assert deployment.status != "running"
    assert "repository locked" in (deployment.error_message or "")

    restores = harness.reconciler.restore
    # The pass wakes for the retry, and never spins on one that is already due.
    assert restores.next_retry(time.time() - 1) is not None
    assert restores.next_retry(time.time() + 1) is None
    del target.refusals["RestoreBackup"]
    await asyncio.sleep(0.25)  # the retry is due
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    assert row.restore_state == "restored"
    assert target.running() == {str(row.id)}
    assert (await harness.deployment(deployment_id)).status == "running"


async def test_a_long_restore_runs_off_the_reconcilers_passes(
    harness: ReconcilerHarness,
) -> None:
    _, n2, deployment_id, _ = await _backed_up_then_lost(harness)
    target = harness.fleet.agent(n2)
    target.hold_restores = asyncio.Event()
    for _ in range(3):
        await harness.reconciler.reconcile_once()
        await harness.reconciler.idle()
        if target.restore_entered.is_set():
            break
    await asyncio.wait_for(target.restore_entered.wait(), 2)
    began = time.monotonic()
    other = await harness.add_deployment("other", replicas=1)
    for _ in range(4):  # passes go on and place other work while the restore runs
        await harness.reconciler.reconcile_once()
        await harness.reconciler.idle()
    assert time.monotonic() - began < 2
    assert len(await harness.replicas(other)) == 1
    (row,) = await harness.replicas(deployment_id)
    assert row.restore_state == "restoring"
    assert "restoring backup 'pre'" in (row.restore_note or "")
    assert str(row.id) not in target.running()
    restores = [c for c in target.calls if c[0] == "RestoreBackup"]
    assert len(restores) == 1  # asked once, not once per pass

    target.hold_restores.set()
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    assert row.restore_state == "restored"
    assert str(row.id) in target.running()


async def test_deleting_the_deployment_cancels_its_restore(harness: ReconcilerHarness) -> None:
    _, n2, deployment_id, _ = await _backed_up_then_lost(harness)
    target = harness.fleet.agent(n2)
    target.hold_restores = asyncio.Event()  # never set: only a cancel ends it
    for _ in range(3):
        await harness.reconciler.reconcile_once()
        await harness.reconciler.idle()
    await asyncio.wait_for(target.restore_entered.wait(), 2)
    await asyncio.wait_for(harness.reconciler.restore.cancel_of(deployment_id), 1)
    await asyncio.wait_for(harness.reconciler.restore.idle(), 1)
    (row,) = await harness.replicas(deployment_id)
    assert row.restore_state == "restoring"  # no outcome recorded for a cancelled one
