"""Whole reconciler scenarios through the harness (real Reconciler, AgentPool and
database; fake agents that record calls): node loss, crash loop, rolling update,
drain, and the rows -> World translation itself. The placement races are in
test_placement_race.py; the same behaviour against real agents in tests/e2e."""

from __future__ import annotations

import asyncio
import time

from controlplane.db.tables import Replica
from controlplane.reconciler.status import FAILING_STREAK
from controlplane.reconciler.world import world_of
from controlplane.scheduler import Claim
from tests.controlplane.reconciler_harness import MI, ReconcilerHarness


async def _two_nodes_two_replicas(harness: ReconcilerHarness) -> tuple[str, str, str]:
    n1 = await harness.add_node("n1")
    n2 = await harness.add_node("n2")
    deployment_id = await harness.add_deployment("web", replicas=2)
    await harness.settle()
    assert {str(r.node_id) for r in await harness.replicas(deployment_id)} == {n1, n2}
    return n1, n2, deployment_id


async def test_world_of_translates_rows_and_agent_reports(harness: ReconcilerHarness) -> None:
    node_id = await harness.add_node("n1", labels={"zone": "a"})
    deployment_id = await harness.add_deployment("web", replicas=1, memory_bytes=32 * MI)
    await harness.settle()
    task = await harness.add_task(memory_bytes=16 * MI)
    await harness.runner.start(task)

    rows = await harness.reconciler._load()
    world = world_of(
        rows.deployments.values(),
        rows.replicas.values(),
        rows.nodes.values(),
        harness.pool,
        rows.claims,
    )

    view = world.nodes[node_id]
    assert (view.status, dict(view.capacity.labels)) == ("ready", {"zone": "a"})
    (replica,) = world.replicas
    assert (replica.deployment_id, replica.node_id) == (deployment_id, node_id)
    assert view.servers is not None
    assert view.servers[replica.id].state == "running"
    assert str(task.id) not in view.servers  # tasks are not replicas
    assert world.deployments[deployment_id].memory_bytes == 32 * MI
    assert list(world.claims) == [Claim(node_id, 100, 16 * MI)]


async def test_a_lost_node_s_replica_moves_to_a_live_node(harness: ReconcilerHarness) -> None:
    n1, n2, deployment_id = await _two_nodes_two_replicas(harness)
    harness.fleet.agent(n1).silent = True
    await harness.until(lambda: harness.pool.state(n1) == "down")
    await harness.settle()

    replicas = await harness.replicas(deployment_id)
    assert [str(r.node_id) for r in replicas] == [n2, n2]
    assert harness.fleet.agent(n2).running() == {str(r.id) for r in replicas}
    assert (await harness.deployment(deployment_id)).status == "running"


async def _after_crash_is_recorded(
    harness: ReconcilerHarness, deployment_id: str, streak: int
) -> Replica:
    for _ in range(100):
        await harness.reconciler.reconcile_once()
        await harness.reconciler.idle()
        for _ in range(5):  # let the watch streams deliver what the calls changed
            await asyncio.sleep(0)
        (row,) = await harness.replicas(deployment_id)
        if row.crash_streak >= streak:
            return row
        await asyncio.sleep(0.005)
    raise AssertionError(f"crash {streak} was never recorded")


async def test_a_crash_loop_backs_off_and_fails_the_deployment(
    harness: ReconcilerHarness,
) -> None:
    await harness.add_node("n1")
    deployment_id = await harness.add_deployment("web", replicas=1)
    await harness.settle()
    (replica,) = await harness.replicas(deployment_id)
    agent = harness.fleet.agent(str(replica.node_id))
    for crash in range(1, FAILING_STREAK + 1):
        agent.crash(str(replica.id))
        await harness.until(lambda: str(replica.id) not in agent.running())
        # Read the row right after the pass that records the crash: with the harness's
        # short back-off a settle() may already have restarted it (and cleared the
        # deadline) on a loaded machine.
        row = await _after_crash_is_recorded(harness, deployment_id, crash)
        assert (row.restart_count, row.crash_streak) == (crash, crash)
        assert row.backoff_until is not None
        if crash == FAILING_STREAK:
            assert (await harness.deployment(deployment_id)).status == "failed"
        await asyncio.sleep(max(0.0, row.backoff_until.timestamp() - time.time()))
        await harness.settle()
        assert str(replica.id) in agent.running()  # restarted after the delay
    starts = [c for c in agent.calls if c == ("StartServer", str(replica.id))]
    assert len(starts) == FAILING_STREAK


async def test_a_rolling_update_replaces_one_replica_at_a_time(
    harness: ReconcilerHarness,
) -> None:
    _, _, deployment_id = await _two_nodes_two_replicas(harness)
    await harness.update_deployment(deployment_id, generation=2, image="encedeus/busybox:v2")

    await harness.reconciler.reconcile_once()
    await harness.reconciler.idle()
    assert len(harness.fleet.calls("RecreateServer")) == 1
    await harness.settle()

    assert len(harness.fleet.calls("RecreateServer")) == 2
    for agent in harness.fleet.agents.values():
        for server in agent.servers.values():
            assert server.spec.image == "encedeus/busybox:v2"
    assert (await harness.deployment(deployment_id)).status == "running"


async def test_a_draining_node_is_emptied_one_replica_at_a_time(
    harness: ReconcilerHarness,
) -> None:
    n1, n2, deployment_id = await _two_nodes_two_replicas(harness)
    n3 = await harness.add_node("n3")
    await harness.drain(n1, n2)
    await harness.settle()
    assert len(harness.fleet.calls("CreateServer")) == 2  # the reconciler moves nothing

    assert await harness.drain_duty.drain_once()  # one slot, with its data
    replicas = await harness.replicas(deployment_id)
    assert sorted(str(r.node_id) for r in replicas).count(n3) == 1
    assert await harness.drain_duty.drain_once()
    assert not await harness.drain_duty.drain_once()  # nothing left
    await harness.settle()

    replicas = await harness.replicas(deployment_id)
    assert [str(r.node_id) for r in replicas] == [n3, n3]
    assert harness.fleet.agent(n3).running() == {str(r.id) for r in replicas}
    assert harness.fleet.agent(n1).servers == {}
    assert harness.fleet.agent(n2).servers == {}
    volumes = {str(r.volume_id) for r in replicas}
    assert volumes <= harness.fleet.agent(n3).volumes  # the data went along ...
    assert not volumes & (harness.fleet.agent(n1).volumes | harness.fleet.agent(n2).volumes)


async def test_agent_reports_are_decided_on_the_rows_already_loaded(
    harness: ReconcilerHarness,
) -> None:
    await harness.add_node("n1")
    deployment_id = await harness.add_deployment("web", replicas=1)
    await harness.settle()
    loads = harness.reconciler.loads
    (replica,) = await harness.replicas(deployment_id)
    agent = harness.fleet.agent(str(replica.node_id))

    agent.crash(str(replica.id))
    await harness.until(lambda: str(replica.id) not in agent.running())
    await harness.settle()
    assert harness.reconciler.loads == loads  # a report: no table read again
    (row,) = await harness.replicas(deployment_id)
    assert row.restart_count == 1  # and the crash was recorded all the same

    await harness.update_deployment(deployment_id, replicas=2)  # wakes, as the API does
    await harness.settle()
    assert harness.reconciler.loads == loads + 1
    assert len(await harness.replicas(deployment_id)) == 2
