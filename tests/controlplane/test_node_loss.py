"""What a slot does when its node is lost (`on_node_loss`), through the reconciler
harness: `wait` keeps it on its node (no second copy anywhere) until the node is back
or `move_after` has passed; `move` places it elsewhere at once. A moved slot asks the
restore hook for its latest backup before its first create, and says in its row and
as an event whether it got one or started empty."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.events.bus import Event, Subscription
from controlplane.reconciler.model import WaitForNode
from controlplane.reconciler.node_loss import RestoreOutcome, RestoreTarget
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
    assert "no backup to restore" in (row.restore_note or "")


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


async def test_the_restore_hook_runs_before_the_first_create_on_the_new_node(
    harness: ReconcilerHarness,
) -> None:
    asked: list[tuple[RestoreTarget, int]] = []

    class OneBackup:
        async def restore_latest_backup(self, target: RestoreTarget) -> RestoreOutcome:
            creates = len(harness.fleet.calls("CreateServer"))
            asked.append((target, creates))
            return RestoreOutcome(restored=True, backup_id="b-42")

    harness.reconciler.restore.hook = OneBackup()
    events = harness.bus.subscribe()
    _, n2, deployment_id = await _one_slot_on_a_lost_node(harness)
    creates_before = len(harness.fleet.calls("CreateServer"))
    await harness.settle()
    (row,) = await harness.replicas(deployment_id)
    ((target, creates),) = asked
    assert (target.node_id, target.volume_id, target.ordinal) == (n2, str(row.volume_id), 0)
    assert creates == creates_before  # before the container was made
    assert (row.restore_state, row.restore_note) == (
        "restored",
        "its node was lost: restored backup b-42",
    )
    assert len(_events(events, "replica_restored")) == 1
    await harness.settle()
    assert len(asked) == 1  # once per move, not per create
