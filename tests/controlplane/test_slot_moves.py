"""Moves through the reconciler harness (fake agents): what a move refuses before it
touches anything, and a move whose target refuses the data leaves the slot running
where it was with the error recorded."""

from __future__ import annotations

import uuid

import pytest

from controlplane.agents import AgentError
from controlplane.volumes.moves import MoveFailed, MoveRefused
from tests.controlplane.reconciler_harness import ReconcilerHarness


async def _placed(harness: ReconcilerHarness) -> tuple[str, str, str]:
    n1 = await harness.add_node("n1")
    deployment_id = await harness.add_deployment("world", replicas=1)
    await harness.settle()
    n2 = await harness.add_node("n2")
    return n1, n2, deployment_id


async def _refusal(harness: ReconcilerHarness, deployment_id: str, target: str | None) -> str:
    with pytest.raises(MoveRefused) as refused:
        await harness.mover.plan(uuid.UUID(deployment_id), 0, target)
    return refused.value.code


async def test_a_move_that_cannot_be_is_refused_before_anything_happens(
    harness: ReconcilerHarness,
) -> None:
    n1, n2, deployment_id = await _placed(harness)
    assert await _refusal(harness, deployment_id, n1) == "same_node"
    assert await _refusal(harness, deployment_id, str(uuid.uuid4())) == "node_not_found"
    with pytest.raises(MoveRefused) as missing:
        await harness.mover.plan(uuid.UUID(deployment_id), 5, None)
    assert missing.value.code == "replica_not_found"
    await harness.drain(n2)
    assert await _refusal(harness, deployment_id, n2) == "node_unavailable"
    assert await _refusal(harness, deployment_id, None) == "no_feasible_node"
    (replica,) = await harness.replicas(deployment_id)
    harness.mover.moving.add(str(replica.id))
    assert await _refusal(harness, deployment_id, None) == "move_in_progress"
    assert harness.fleet.calls("StopServer") == []


async def test_a_refused_transfer_leaves_the_slot_running_where_it_was(
    harness: ReconcilerHarness,
) -> None:
    n1, n2, deployment_id = await _placed(harness)
    source = harness.fleet.agent(n1)
    source.refusals["SendVolume"] = AgentError("aborted", "the target refused the transfer")
    plan = await harness.mover.plan(uuid.UUID(deployment_id), 0, n2)
    with pytest.raises(MoveFailed, match="refused"):
        await harness.mover.move(plan)
    await harness.settle()
    (replica,) = await harness.replicas(deployment_id)
    assert str(replica.node_id) == n1
    assert source.running() == {str(replica.id)}
    assert harness.fleet.agent(n2).servers == {}
    assert replica.transfer is not None
    assert replica.transfer["phase"] == "failed"
    assert "refused" in replica.transfer["error"]
    assert str(replica.volume_id) in source.volumes
