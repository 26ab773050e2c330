"""What a slot does when its node is lost (`on_node_loss`), through the reconciler
harness: `wait` keeps it on its node (no second copy anywhere) until the node is back
or `move_after` has passed; `move` places it elsewhere at once. A moved slot's
container is created stopped, the restore hook puts its latest backup back, and only
then does it start; its row and an event say whether it got one or started empty."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from controlplane.events.bus import Event, Subscription
from controlplane.reconciler.model import WaitForNode
from controlplane.reconciler.node_loss import BackupChoice, RestoreTarget
from tests.controlplane.reconciler_harness import ReconcilerHarness


async def _one_slot_on_a_lost_node(
    harness: ReconcilerHarness, **fields: Any
) -> tuple[str, str, str]:
    """n1 runs the slot, n2 is free; then n1 goes silent (down)."""
    n1 = await harness.add_node("n1")
    deployment_id = await harness.add_deployment("world", replicas=1, **fields)
    await harness.settle()
    n2 = await harness.add_node("n2")
    harness.fleet.agent(n1).silent = True
    await harness.until(lambda: harness.pool.state(n1) == "down")
    return n1, n2, deployment_id


def _events(subscription: Subscription, kind: str) -> list[Event]:
    """The events of `kind` published so far (the harness's bus keeps no log)."""
    found: list[Event] = []
    while (event := subscription.get_nowait()) is not None:
        found.append(event)
    return [e for e in found if e.type == kind]


async def test_wait_keeps_the_slot_on_its_node_until_it_is_back(
    harness: ReconcilerHarness,
) -> None:
    events = harness.bus.subscribe()
    n1, _, deployment_id = await _one_slot_on_a_lost_node(harness, on_node_loss="wait")
    (before,) = await harness.replicas(deployment_id)
    actions = await harness.reconciler.reconcile_once()
    assert WaitForNode(deployment_id, 0, n1, None) in actions
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    assert (row.id, str(row.node_id)) == (before.id, n1)
    assert harness.fleet.calls("CreateServer") == [(n1, str(before.id))]  # never on n2

    harness.fleet.agent(n1).silent = False
    await harness.until(lambda: harness.pool.state(n1) == "ready")
    await harness.settle()
    assert harness.fleet.agent(n1).running() == {str(before.id)}
    assert _events(events, "replica_started_empty") == []


async def test_wait_with_move_after_moves_once_it_has_passed(harness: ReconcilerHarness) -> None:
    _, n2, deployment_id = await _one_slot_on_a_lost_node(
        harness, on_node_loss="wait", move_after_seconds=1
    )
    (before,) = await harness.replicas(deployment_id)
    actions = await harness.reconciler.reconcile_once()
    (waiting,) = [a for a in actions if isinstance(a, WaitForNode)]
    assert waiting.move_at is not None
    await asyncio.sleep(max(0.0, waiting.move_at - harness.reconciler._clock()) + 0.05)
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    assert str(row.node_id) == n2
    assert row.volume_id == before.volume_id  # the slot's identity moved with it
    assert row.restore_state == "empty"
    assert "no completed backup" in (row.restore_note or "")


async def test_move_starts_elsewhere_at_once_and_says_it_started_empty(
    harness: ReconcilerHarness,
) -> None:
    events = harness.bus.subscribe()
    _, n2, deployment_id = await _one_slot_on_a_lost_node(harness)  # default: move
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    assert str(row.node_id) == n2
    assert harness.fleet.agent(n2).running() == {str(row.id)}
    assert row.restore_state == "empty"
    (event,) = _events(events, "replica_started_empty")
    assert event.deployment_id == deployment_id
    assert event.data["ordinal"] == 0
    assert event.data["node_id"] == n2
    assert "started without its data" in event.data["message"]


async def test_the_restore_runs_between_a_stopped_create_and_the_first_start(
    harness: ReconcilerHarness,
) -> None:
    asked: list[tuple[RestoreTarget, list[tuple[str, str]], set[str]]] = []
    taken = datetime.now(UTC) - timedelta(minutes=3)

    class OneBackup:
        async def latest_backup(self, target: RestoreTarget) -> BackupChoice | None:
            return BackupChoice("b-42-backup", "nightly", taken)

        async def restore(self, target: RestoreTarget, backup: BackupChoice) -> None:
            agent = harness.fleet.agent(target.node_id)
            asked.append((target, list(agent.calls), agent.running()))

    harness.reconciler.restore.hook = OneBackup()
    events = harness.bus.subscribe()
    _, n2, deployment_id = await _one_slot_on_a_lost_node(harness)
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    ((target, calls, running),) = asked
    assert (target.node_id, target.volume_id, target.ordinal) == (n2, str(row.volume_id), 0)
    assert ("CreateServer", str(row.id)) in calls  # its container exists, stopped
    assert ("StartServer", str(row.id)) not in calls
    assert running == set()
    assert harness.fleet.agent(n2).running() == {str(row.id)}  # started afterwards
    assert row.restore_state == "restored"
    assert row.restore_note is not None
    assert "restored backup 'nightly' (b-42-bac)" in row.restore_note
    assert "3 min old" in row.restore_note
    (event,) = _events(events, "replica_restored")
    assert event.data["backup_id"] == "b-42-backup"
    assert 170 <= event.data["backup_age_seconds"] <= 200
    await harness.settle()
    assert len(asked) == 1  # once per move
