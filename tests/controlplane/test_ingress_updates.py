"""The routing table follows the replicas within a second (issue 14): a replica that
starts, one that fails, a scale-up, a move to another node and a stop each reach the
ingress node's table within UPDATE_WITHIN of the observation — the real publisher,
reconciler and agent pool over fake agents (tests/controlplane/reconciler_harness.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from controlplane.config import ControlPlaneConfig
from controlplane.ingress.publisher import IngressPublisher
from protos import agent_pb2 as pb
from tests.controlplane.fake_agent import FakeAgent
from tests.controlplane.reconciler_harness import ReconcilerHarness

UPDATE_WITHIN = 1.0
SUFFIX = "apps.test"


@pytest.fixture
async def edge(harness: ReconcilerHarness) -> AsyncIterator[FakeAgent]:
    """An ingress node's agent, its publisher running (only wake-ups rebuild: the
    periodic pass is a minute away)."""
    node_id = uuid.uuid4()
    agent = harness.fleet.agent(str(node_id))
    agent.ingress = True
    await harness.add_node("edge", id=node_id)
    config = ControlPlaneConfig(domain_suffix=SUFFIX)
    publisher = IngressPublisher(
        harness.database,
        harness.pool,
        config,
        interval=60,
        placement=harness.reconciler.placement,
    )
    running = asyncio.create_task(publisher.run())
    try:
        yield agent
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _routed_within(agent: FakeAgent, check: Callable[[pb.Route], bool]) -> pb.Route:
    """The web app's route in the node's latest table, once `check` holds for it;
    fails unless that happens within UPDATE_WITHIN."""
    started = time.monotonic()
    while True:
        routes = [r for r in (agent.tables[-1].routes if agent.tables else []) if r.hosts]
        if routes and check(routes[0]):
            return routes[0]
        assert time.monotonic() - started < UPDATE_WITHIN, routes
        await asyncio.sleep(0.01)


async def _restarted(harness: ReconcilerHarness, agent: FakeAgent, count: int) -> None:
    while len(agent.running()) < count:
        await harness.reconciler.reconcile_once()
        await asyncio.sleep(0.05)


async def test_routes_follow_start_scale_failure_move_and_stop(
    harness: ReconcilerHarness, edge: FakeAgent
) -> None:
    deployment_id = await harness.add_deployment("web", replicas=1, ports=[8080])
    await harness.settle()
    route = await _routed_within(edge, lambda r: len(r.upstreams) == 1)
    assert list(route.hosts) == [f"web.{SUFFIX}"]
    assert route.upstreams[0].address.startswith("fake-edge:")

    await harness.update_deployment(deployment_id, replicas=3)
    await harness.settle()
    await _routed_within(edge, lambda r: len(r.upstreams) == 3)

    # A replica fails: it leaves the table before the reconciler has even looked.
    replicas = await harness.replicas(deployment_id)
    edge.crash(str(replicas[0].id))
    await _routed_within(edge, lambda r: len(r.upstreams) == 2)
    await asyncio.wait_for(_restarted(harness, edge, 3), 10)  # after its back-off
    await _routed_within(edge, lambda r: len(r.upstreams) == 3)

    # The node drains: the replicas move to another one (the drain duty moves one
    # slot at a time, with its data), and the table with them.
    other = harness.fleet.agent(await harness.add_node("other"))
    answer = other.get_server

    async def slow_get_server(server_id: str) -> pb.Server:
        await asyncio.sleep(0.2)  # a busy target: the move commits well after its start
        return await answer(server_id)

    other.get_server = slow_get_server  # type: ignore[method-assign]
    await harness.drain(str(replicas[0].node_id))
    while await harness.drain_duty.drain_once():
        pass
    await harness.settle()
    # A move writes the slot's new node after the target started it: the table
    # follows that commit, not only the target's start signal (which came first).
    await _routed_within(
        edge,
        lambda r: (
            len(r.upstreams) == 3 and all(u.address.startswith("fake-other:") for u in r.upstreams)
        ),
    )

    await harness.update_deployment(deployment_id, running=False)
    await harness.settle()
    await _routed_within(edge, lambda r: r.stopped)
