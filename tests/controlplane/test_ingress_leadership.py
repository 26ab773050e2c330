"""Several control planes on one real PostgreSQL: only the leader pushes routing
tables to the ingress nodes (the publisher is a leader duty), a change made through a
follower wakes the leader's publisher over NOTIFY, and when the leader goes the next
one sends every ingress a table of a newer version.

Each member has its own agent pool and its own fake agent for the one ingress node,
so the tables each fake received are exactly the ones that member pushed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aiohttp import web

from controlplane.agents import AgentPool, NodeEndpoint
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database, create_engine
from controlplane.db.notify import asyncpg_connect_args, notifier_for
from controlplane.ingress.wiring import install_ingress
from controlplane.leadership import PostgresLeadership
from controlplane.placement import PlacementApplier
from controlplane.state import AGENT_POOL
from protos import agent_pb2 as pb
from tests.controlplane.fake_agent import FakeFleet

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
NODE = "00000000-0000-0000-0000-00000000e0e0"


class Member:
    """One control plane's ingress publisher, with its leadership, notifier and pool."""

    def __init__(self, database_url: str, name: str) -> None:
        self.database = Database(create_engine(database_url))
        self.notifier = notifier_for(self.database.engine)
        self.leadership = PostgresLeadership(
            asyncpg_connect_args(self.database.engine),
            name=name,
            retry_seconds=0.1,
            probe_seconds=0.2,
        )
        self.fleet = FakeFleet()
        self.fleet.agent(NODE).ingress = True
        self.pool = AgentPool(client_factory=self.fleet.client_for, heartbeat_interval_ms=50)
        self.app = web.Application()
        self.app[AGENT_POOL] = self.pool
        # Only wake-ups rebuild within this test's time: the periodic pass is a minute.
        config = ControlPlaneConfig(reconcile_interval_seconds=60)
        self.publisher = install_ingress(
            self.app,
            config,
            self.database,
            (self.leadership, self.notifier),
            PlacementApplier(self.database, self.pool),
        )
        self.passes = 0
        publish_once = self.publisher.publish_once

        async def counted() -> None:
            self.passes += 1
            await publish_once()

        self.publisher.publish_once = counted  # type: ignore[method-assign]
        self.runner = web.AppRunner(self.app)
        self.task: asyncio.Task[None] | None = None

    @property
    def pushed(self) -> list[pb.RouteTable]:
        """The tables this member sent to the ingress node."""
        return self.fleet.agent(NODE).tables

    async def start(self) -> None:
        await self.runner.setup()  # the app's own contexts, as `serve` runs them
        await self.notifier.start()
        await self.pool.start()
        await self.pool.sync([NodeEndpoint(NODE, "127.0.0.1:1", "secret")])
        self.task = asyncio.create_task(self.leadership.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        await self.pool.close()
        await self.notifier.close()
        await self.runner.cleanup()
        await self.database.close()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not reached in time"
        await asyncio.sleep(0.02)


@POSTGRES_ONLY
async def test_only_the_leader_pushes_and_a_follower_wakes_it(database_url: str) -> None:
    first, second = Member(database_url, "first"), Member(database_url, "second")
    try:
        await first.start()
        await _until(lambda: bool(first.pushed) and first.pool.state(NODE) == "ready")
        assert first.leadership.epoch is not None
        # Every wake-up the node's arrival gave the leader has been taken: from here on
        # only a change (or the minute's pass) makes it build again.
        await _until(lambda: not first.publisher._wake.is_set())
        await second.start()
        await _until(lambda: second.pool.state(NODE) == "ready")
        second.publisher.wake_here()  # would make a running publisher pass at once
        passes = first.passes
        # The follower's change reaches the leader's publisher (its periodic pass is a
        # minute away): a domain added or removed through any process is routed now.
        second.publisher.changed()
        await _until(lambda: first.passes > passes, timeout=5)
        assert second.leadership.epoch is None
        assert (second.passes, second.pushed) == (0, [])

        # The leader goes: the other takes over and sends a table of a newer version.
        last = first.pushed[-1].version
        await first.stop()
        await _until(lambda: bool(second.pushed), timeout=5)
        assert second.pushed[-1].version > last
    finally:
        for member in (first, second):
            await member.stop()
