"""The tasks component in the application: the runner, its view of the agents (the
gRPC pool) and its placement (the one placement path, :mod:`controlplane.placement`),
the loop that feeds it the agents' signals (lifecycle events, heartbeat changes,
nodes going down), and the task queue's loop (:class:`~controlplane.tasks.queue.TaskQueue`,
one object: with several control planes only the leader runs it)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Callable

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from controlplane.agents.client import AgentError
from controlplane.agents.pool import AgentPool, NodeSignal
from controlplane.db.engine import Database
from controlplane.events.bus import EventBus
from controlplane.leadership import Duty, Leadership
from controlplane.placement import PlacementApplier, PlacementRefused, Proposal
from controlplane.scheduler import Claim, PlacementRequest, Snapshot, plan
from controlplane.state import AGENT_POOL, RECONCILER, TASK_QUEUE, TASK_RUNNER
from controlplane.tasks.contract import TaskCommit
from controlplane.tasks.queue import TaskQueue
from controlplane.tasks.runner import TaskRunner
from protos import agent_pb2 as pb

log = get_logger(__name__)

SWEEP_SECONDS = 15.0
# How often a task is proposed again after its placement lost a race at commit.
PROPOSALS = 3

PoolSource = Callable[[], AgentPool]
ApplierSource = Callable[[], PlacementApplier]


class PoolTaskAgents:
    """:class:`~controlplane.tasks.contract.TaskAgents` over the control plane's agent pool
    (looked up on use: the pool is built by another component)."""

    def __init__(self, pool: PoolSource) -> None:
        self._pool_of = pool

    @property
    def _pool(self) -> AgentPool:
        return self._pool_of()

    async def create_server(self, node_id: str, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        server = await self._pool.client(node_id).create_server(spec, start=start)
        self._pool.record_server(node_id, server.status)
        return server

    async def remove_server(self, node_id: str, server_id: str, *, delete_data: bool) -> None:
        try:
            await self._pool.client(node_id).remove_server(server_id, delete_data=delete_data)
        except AgentError as exc:
            if exc.code != "not_found":
                raise
        self._pool.forget_server(node_id, server_id)

    async def get_logs(
        self, node_id: str, server_id: str, *, tail: int, follow: bool
    ) -> AsyncGenerator[pb.LogLine, None]:
        lines = self._pool.client(node_id).get_logs(server_id, tail=tail, follow=follow)
        try:
            async for line in lines:
                yield line
        finally:
            # Closing the client's generator cancels its gRPC stream right away.
            close = getattr(lines, "aclose", None)
            if close is not None:
                await close()


class SchedulerTaskPlacement:
    """:class:`~controlplane.tasks.contract.TaskPlacement` on the one placement path: a
    node is proposed from the committed capacity snapshot (the same one deployments
    are placed on) and committed at the placement commit point, which refuses it when
    a replica or another task took the room meanwhile; then it proposes again."""

    def __init__(self, applier: ApplierSource) -> None:
        self._applier_of = applier

    async def snapshot(self) -> Snapshot:
        """The committed capacity now (what the task queue orders its tasks on)."""
        return await self._applier_of().snapshot()

    async def choose_node(
        self, cpu_millis: int, memory_bytes: int, avoid_nodes: frozenset[str] = frozenset()
    ) -> str | None:
        """The node the scheduler proposes for the task now, never one of
        `avoid_nodes` (None: none has room)."""
        snapshot = await self._applier_of().snapshot()
        request = PlacementRequest(
            replica_ids=["task"],
            cpu_millis=cpu_millis,
            memory_bytes=memory_bytes,
            avoid_nodes=avoid_nodes,
        )
        result = plan(snapshot, request)
        return result.placements[0].node_id if result.placements else None

    async def place(
        self,
        cpu_millis: int,
        memory_bytes: int,
        commit: TaskCommit,
        avoid_nodes: frozenset[str] = frozenset(),
    ) -> str | None:
        for _ in range(PROPOSALS):
            node_id = await self.choose_node(cpu_millis, memory_bytes, avoid_nodes)
            if node_id is None:
                return None
            proposal = Proposal(
                "task",
                Claim(node_id=node_id, cpu_millis=cpu_millis, memory_bytes=memory_bytes),
                functools.partial(_commit_on, commit, node_id),
            )
            try:
                await self._applier_of().commit([proposal])
            except PlacementRefused as refused:
                log.info("task_placement_refused", node_id=node_id, reason=refused.refused)
                continue
            return node_id
        return None


async def _commit_on(commit: TaskCommit, node_id: str, session: AsyncSession) -> None:
    await commit(session, node_id)


def install_tasks(
    app: web.Application, database: Database, bus: EventBus, leadership: Leadership
) -> TaskRunner:
    """Put the task runner on `app` and, while this process leads, follow the agent
    pool's signals (the pool is `app[AGENT_POOL]`, built by the orchestration
    component). Starting a task works through any control plane; following what its
    container does is the leader's duty."""

    def pool() -> AgentPool:
        return app[AGENT_POOL]

    def applier() -> PlacementApplier:
        return app[RECONCILER].placement

    agents = PoolTaskAgents(pool)
    placement = SchedulerTaskPlacement(applier)
    runner = TaskRunner(database, bus, agents, placement)
    app[TASK_RUNNER] = runner
    queue = TaskQueue(database, runner, placement, bus)
    app[TASK_QUEUE] = queue

    async def follow() -> None:
        if AGENT_POOL in app:
            await _follow_agents(runner, app[AGENT_POOL], queue.wake)

    async def run_queue() -> None:
        if AGENT_POOL in app:
            await queue.run()

    # No orchestration component in this application (e.g. an API-only test app):
    # tasks can be created and read, starting them answers 503.
    leadership.add_duty(Duty("tasks", follow))
    leadership.add_duty(Duty("task-queue", run_queue))
    return runner


async def _follow_agents(
    runner: TaskRunner, pool: AgentPool, wake_queue: Callable[[], None]
) -> None:
    signals: asyncio.Queue[NodeSignal] = asyncio.Queue(maxsize=10_000)

    def listen(signal: NodeSignal) -> None:
        try:
            signals.put_nowait(signal)
        except asyncio.QueueFull:
            # The periodic sweep catches up on whatever was dropped.
            log.warning("task_signal_dropped", node_id=signal.node_id, kind=signal.kind)

    pool.add_listener(listen)
    try:
        await _consume(signals, runner, pool, wake_queue)
    finally:
        pool.remove_listener(listen)


def _no_queue() -> None:
    pass


async def _consume(
    signals: asyncio.Queue[NodeSignal],
    runner: TaskRunner,
    pool: AgentPool,
    wake_queue: Callable[[], None] = _no_queue,
) -> None:
    # The sweep is due every SWEEP_SECONDS however busy the queue is: lost containers
    # are found only by it, and a steady stream of signals must not starve it.
    loop = asyncio.get_running_loop()
    next_sweep = loop.time() + SWEEP_SECONDS
    while True:
        signal: NodeSignal | None = None
        wait = next_sweep - loop.time()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    signal = await signals.get()
        try:
            if signal is None:
                next_sweep = loop.time() + SWEEP_SECONDS
                await _sweep(runner, pool)
            else:
                await _handle(signal, runner, pool)
                if signal.kind == "down":
                    wake_queue()  # its tasks may have been re-queued
        except Exception:
            log.exception("task_signal_failed")


async def _handle(signal: NodeSignal, runner: TaskRunner, pool: AgentPool) -> None:
    if signal.kind == "lifecycle" and signal.lifecycle is not None:
        await runner.on_lifecycle(signal.node_id, signal.lifecycle)
    elif signal.kind == "changed":
        observation = pool.observation(signal.node_id)
        if observation is not None and observation.servers is not None:
            await runner.on_heartbeat(signal.node_id, list(observation.servers.values()))
    elif signal.kind == "down":
        await runner.on_node_down(signal.node_id)


async def _sweep(runner: TaskRunner, pool: AgentPool) -> None:
    # Every connected node, not only those with Running tasks: a task container no
    # row accounts for any more (see controlplane.tasks.orphans) can be on any node.
    nodes = set(await runner.nodes_with_running_tasks()) | set(pool.node_ids())
    for node_id in sorted(nodes):
        observation = pool.observation(node_id)
        if observation is not None and observation.servers is not None:
            await runner.on_heartbeat(node_id, list(observation.servers.values()))
