"""A task and a scale-up race for the last room on a node: exactly one gets it.

Each side proposes its placement from a snapshot in which the room is free; the other
side commits in between. Placements are committed at one point that checks capacity
again against everything already committed, so the later commit is refused (the task
answers no_capacity, the replica waits as unschedulable) instead of overcommitting.
"""

from __future__ import annotations

import uuid

import pytest

from controlplane.reconciler.world import Rows
from controlplane.tasks.contract import TaskStartError
from tests.controlplane.reconciler_harness import MI, ReconcilerHarness

NODE_MEMORY = 256 * MI
SLOT = 128 * MI


async def _committed_memory(harness: ReconcilerHarness, node_id: str, deployment_id: str) -> int:
    replicas = [r for r in await harness.replicas(deployment_id) if str(r.node_id) == node_id]
    return len(replicas) * SLOT


async def _one_slot_left(harness: ReconcilerHarness) -> tuple[str, str]:
    node_id = await harness.add_node("n1", memory_bytes=NODE_MEMORY)
    deployment_id = await harness.add_deployment("web", replicas=1, memory_bytes=SLOT)
    await harness.settle()
    assert len(harness.fleet.agent(node_id).running()) == 1
    return node_id, deployment_id


async def test_a_task_committed_while_a_scale_up_is_being_decided_wins_the_slot(
    harness: ReconcilerHarness,
) -> None:
    node_id, deployment_id = await _one_slot_left(harness)
    task = await harness.add_task(memory_bytes=SLOT)
    load = harness.reconciler._load
    raced = False

    async def load_then_task_starts() -> Rows:
        nonlocal raced
        rows = await load()
        if not raced:  # the pass decides from rows loaded before the task committed
            raced = True
            await harness.runner.start(task)
        return rows

    harness.reconciler._load = load_then_task_starts  # type: ignore[method-assign]
    await harness.update_deployment(deployment_id, replicas=2)
    await harness.settle()

    assert (await harness.task(task.id)).status == "Running"
    assert (await harness.task(task.id)).node_id == uuid.UUID(node_id)
    placed = await _committed_memory(harness, node_id, deployment_id)
    assert placed + SLOT <= NODE_MEMORY, "the replica took room the task had committed"
    assert len(harness.fleet.agent(node_id).running()) == 2  # the first replica + the task
    deployment = await harness.deployment(deployment_id)
    assert deployment.error_message == "no node can take a replica now"


async def test_a_scale_up_committed_while_a_task_is_being_placed_wins_the_slot(
    harness: ReconcilerHarness,
) -> None:
    node_id, deployment_id = await _one_slot_left(harness)
    task = await harness.add_task(memory_bytes=SLOT)
    choose = harness.placement.choose_node

    async def choose_then_scale_up(
        cpu_millis: int, memory_bytes: int, avoid_nodes: frozenset[str] = frozenset()
    ) -> str | None:
        chosen = await choose(cpu_millis, memory_bytes, avoid_nodes)
        # The task proposed this node; the scale-up commits the last room meanwhile.
        await harness.update_deployment(deployment_id, replicas=2)
        await harness.reconciler.reconcile_once()
        await harness.reconciler.idle()
        return chosen

    harness.placement.choose_node = choose_then_scale_up  # type: ignore[method-assign]
    with pytest.raises(TaskStartError) as refused:
        await harness.runner.start(task)

    assert refused.value.code == "no_capacity"
    assert (await harness.task(task.id)).status == "Pending"
    assert await _committed_memory(harness, node_id, deployment_id) == NODE_MEMORY
    assert len(harness.fleet.agent(node_id).running()) == 2  # both replicas, no task
