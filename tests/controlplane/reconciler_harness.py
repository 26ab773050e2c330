"""A harness for the reconciler (as Nomad's scheduler ``Harness`` records plans): the
real :class:`Reconciler`, :class:`AgentPool`, task runner and placement on a real
database, with every agent replaced by a :class:`FakeAgent` that records the calls it
gets and answers at once. Scenarios (node loss, crash loops, rolling updates, drains,
races) run through it in milliseconds; the real agents are proven elsewhere
(tests/e2e, and the shared agent-client contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from controlplane.agents import AgentPool
from controlplane.db.engine import Database, create_engine
from controlplane.db.migrate import upgrade_database
from controlplane.db.tables import Deployment, Node, Replica, User
from controlplane.db.tables.tasks import Task
from controlplane.events.bus import EventBus
from controlplane.reconciler.loop import Reconciler
from controlplane.reconciler.model import BackoffPolicy, RestoreData, Unschedulable, WaitForNode
from controlplane.tasks.queue import TaskQueue
from controlplane.tasks.runner import TaskRunner
from controlplane.tasks.wiring import PoolTaskAgents, SchedulerTaskPlacement
from controlplane.volumes.drain import NodeDrain
from controlplane.volumes.moves import SlotMover
from tests.controlplane.fake_agent import FakeFleet

MI = 2**20
GRACE_SECONDS = 0.3
HEARTBEAT_MS = 20


class ReconcilerHarness:
    """The control plane's orchestration over fake agents (see the module docstring)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.bus = EventBus()
        self.fleet = FakeFleet()
        self.pool = AgentPool(
            client_factory=self.fleet.client_for,
            grace_seconds=GRACE_SECONDS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            reconnect_initial=0.01,
            reconnect_max=0.05,
        )
        self.reconciler = Reconciler(
            database,
            self.pool,
            bus=self.bus,
            interval=60.0,  # no timer here: the harness runs every pass itself
            backoff=BackoffPolicy(base=0.05, cap=0.2, reset_after=60.0, restart_retry=0.2),
        )
        self.placement = SchedulerTaskPlacement(lambda: self.reconciler.placement)
        self.runner = TaskRunner(
            database,
            self.bus,
            PoolTaskAgents(lambda: self.pool),
            self.placement,
            orphan_grace_seconds=GRACE_SECONDS,
        )
        self.queue = TaskQueue(database, self.runner, self.placement, self.bus)
        self.mover = SlotMover(
            database,
            self.pool,
            self.reconciler.placement,
            self.bus,
            wake=self.reconciler.wake,
            hold=self.reconciler.paused,
        )
        self.drain_duty = NodeDrain(database, self.mover, interval=60.0, retry_after=0.0)
        self.user_id = uuid.uuid4()

    async def start(self) -> None:
        async with self.database.transaction() as session:
            session.add(
                User(
                    id=self.user_id,
                    username=f"u{self.user_id.hex[:8]}",
                    email=f"{self.user_id.hex[:8]}@example.com",
                    password_hash="x",
                )
            )
        await self.pool.start()

    async def close(self) -> None:
        await self.reconciler.calls.cancel()
        await self.pool.close()

    # ---- desired state ---------------------------------------------------

    async def add_node(
        self, name: str, *, cpu_millis: int = 2000, memory_bytes: int = 1024 * MI, **fields: Any
    ) -> str:
        """An enrolled node whose (fake) agent reports at once; waits until it is ready."""
        node = Node(
            name=name,
            status="ready",
            secret=f"secret-{name}-{'0' * 32}",  # signs transfer tokens (HS256: 32+)
            grpc_address=f"fake-{name}:1",
            http_address=f"fake-{name}:2",
            cpu_millis=cpu_millis,
            memory_bytes=memory_bytes,
            **fields,
        )
        async with self.database.transaction() as session:
            session.add(node)
        node_id = str(node.id)
        self.fleet.addresses[node.http_address] = self.fleet.agent(node_id)
        self.reconciler.wake()
        await self.reconciler.reconcile_once()  # connects the pool to the new node
        await self.until(lambda: self.node_reporting(node_id))
        return node_id

    def node_reporting(self, node_id: str) -> bool:
        """Ready, with a heartbeat received on the current connection."""
        observation = self.pool.observation(node_id)
        return (
            self.pool.state(node_id) == "ready"
            and observation is not None
            and observation.servers is not None
        )

    async def add_deployment(
        self, app_name: str, *, replicas: int = 1, memory_bytes: int = 64 * MI, **fields: Any
    ) -> str:
        deployment = Deployment(
            user_id=self.user_id,
            app_name=app_name,
            image="encedeus/busybox:latest",
            replicas=replicas,
            memory_bytes=memory_bytes,
            **fields,
        )
        async with self.database.transaction() as session:
            session.add(deployment)
        self.reconciler.wake()  # as the API does after every change
        return str(deployment.id)

    async def update_deployment(self, deployment_id: str, **values: Any) -> None:
        async with self.database.transaction() as session:
            await session.exec(
                update(Deployment)
                .where(col(Deployment.id) == uuid.UUID(deployment_id))
                .values(**values)
            )
        self.reconciler.wake()

    async def drain(self, *node_ids: str) -> None:
        async with self.database.transaction() as session:
            await session.exec(
                update(Node)
                .where(col(Node.id).in_([uuid.UUID(n) for n in node_ids]))
                .values(draining=True)
            )
        self.reconciler.wake()

    async def add_task(self, *, memory_bytes: int, cpu_millis: int = 100, retries: int = 0) -> Task:
        task = Task(
            user_id=self.user_id,
            image="encedeus/busybox:latest",
            command=["true"],
            cpu_millis=cpu_millis,
            memory_bytes=memory_bytes,
            retries=retries,
        )
        async with self.database.transaction() as session:
            session.add(task)
        return task

    # ---- observing -------------------------------------------------------

    async def settle(self, max_passes: int = 30) -> int:
        """Reconcile until two passes in a row do nothing (but report unschedulable
        or waiting slots, or ask for a restore, which runs off the pass and is waited
        for here); the number of passes."""
        quiet = 0
        for passes in range(1, max_passes + 1):
            actions = await self.reconciler.reconcile_once()
            await self.reconciler.idle()
            await self.reconciler.restore.idle()
            for _ in range(5):  # let the watch streams deliver what the calls changed
                await asyncio.sleep(0)
            quiet_kinds = Unschedulable | WaitForNode | RestoreData
            busy = [a for a in actions if not isinstance(a, quiet_kinds)]
            quiet = 0 if busy else quiet + 1
            if quiet == 2:
                return passes
        raise AssertionError(f"not converged after {max_passes} passes")

    async def until(self, check: Callable[[], bool], timeout: float = 3.0) -> None:
        """Wait (briefly polling) until `check()` holds."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.005)

    async def replicas(self, deployment_id: str) -> list[Replica]:
        async with self.database.session() as session:
            statement = select(Replica).where(
                col(Replica.deployment_id) == uuid.UUID(deployment_id)
            )
            return sorted((await session.exec(statement)).all(), key=lambda r: r.ordinal)

    async def deployment(self, deployment_id: str) -> Deployment:
        async with self.database.session() as session:
            row = await session.get(Deployment, uuid.UUID(deployment_id))
        assert row is not None
        return row

    async def task(self, task_id: uuid.UUID) -> Task:
        async with self.database.session() as session:
            row = await session.get(Task, task_id)
        assert row is not None
        return row


@contextlib.asynccontextmanager
async def reconciler_harness(database_url: str) -> AsyncIterator[ReconcilerHarness]:
    """A started harness on a migrated database at `database_url`."""
    await upgrade_database(database_url)
    database = Database(create_engine(database_url))
    harness = ReconcilerHarness(database)
    try:
        await harness.start()
        yield harness
    finally:
        await harness.close()
        await database.close()
