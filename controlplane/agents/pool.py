"""The control plane's connections to its agents: one client and one `Watch` stream
per node, reconnecting with back-off, feeding liveness and the latest observations.

Consumers (the reconciler, the task runner) read :meth:`AgentPool.observation` and
:meth:`AgentPool.liveness`, call agents through :meth:`AgentPool.client`, and register
a listener to hear about changes (a server changed state, a lifecycle event, a node
going up or down) so that they can react at once instead of polling.

With several control planes every process keeps its own pool, Watch streams included
(docs/high-availability.md, "Views"): followers answer status, metrics and node views
and reach agents for console, logs and commands without the leader. Only the leader's
consumers act on the signals (they register while leading and remove their listener
when they stop: :meth:`AgentPool.remove_listener`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from controlplane.agents.client import AgentClient, AgentError, GrpcAgentClient
from controlplane.agents.liveness import LivenessState, NodeLiveness, Transition
from protos import agent_pb2 as pb

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NodeEndpoint:
    """How to reach one enrolled node's gRPC server."""

    node_id: str
    grpc_address: str
    secret: str


@dataclass(slots=True)
class NodeObservation:
    """What a node last reported. `servers` is None until the first heartbeat of the
    current connection; `stats` holds each server's latest resource use."""

    info: pb.NodeInfo | None = None
    host: pb.HostStats | None = None
    servers: dict[str, pb.ServerStatus] | None = None
    stats: dict[str, pb.ServerStats] = field(default_factory=dict)
    last_heartbeat: float | None = None
    routes_version: int = 0  # ingress nodes: the routing table version served


SignalKind = Literal["changed", "lifecycle", "up", "down"]


@dataclass(frozen=True, slots=True)
class NodeSignal:
    """Something happened on `node_id`; `lifecycle` is set for kind ``lifecycle``."""

    node_id: str
    kind: SignalKind
    lifecycle: pb.LifecycleEvent | None = None


Listener = Callable[[NodeSignal], None]
ClientFactory = Callable[[NodeEndpoint], AgentClient]


def grpc_client_factory(root_certificates: bytes | None = None) -> ClientFactory:
    """Real clients: gRPC with the node secret, TLS when `root_certificates` is set."""

    def build(endpoint: NodeEndpoint) -> AgentClient:
        return GrpcAgentClient(
            endpoint.grpc_address, endpoint.secret, root_certificates=root_certificates
        )

    return build


def _digest(servers: Iterable[pb.ServerStatus]) -> tuple[tuple[object, ...], ...]:
    return tuple(
        sorted(
            (
                s.id,
                s.state,
                s.health,
                s.exited,
                s.finished_at_ms,
                s.started_at_ms,
                tuple(sorted(s.labels.items())),
            )
            for s in servers
        )
    )


class _Connection:
    def __init__(self, endpoint: NodeEndpoint, client: AgentClient) -> None:
        self.endpoint = endpoint
        self.client = client
        self.observation = NodeObservation()
        self.digest: tuple[tuple[object, ...], ...] = ()
        # The servers as this stream last showed them (its heartbeats and lifecycle
        # events), kept while the node is down: a heartbeat may say "unchanged".
        self.servers: dict[str, pb.ServerStatus] | None = None
        self.task: asyncio.Task[None] | None = None


class AgentPool:
    """Owns every agent connection. Call :meth:`sync` with the enrolled nodes whenever
    they change, :meth:`start` once and :meth:`close` at shutdown (it cancels the
    watch tasks it owns)."""

    def __init__(
        self,
        *,
        client_factory: ClientFactory | None = None,
        grace_seconds: float = 20.0,
        heartbeat_interval_ms: int = 1000,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._factory = client_factory or grpc_client_factory()
        self._connections: dict[str, _Connection] = {}
        self._listeners: list[Listener] = []
        self._clock = clock
        self.liveness = NodeLiveness(grace_seconds)
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._reconnect = (reconnect_initial, reconnect_max)
        self._ticker: asyncio.Task[None] | None = None

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` (on the event loop, must not block) for every signal."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling `listener` (no-op when it is not registered)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, signal: NodeSignal) -> None:
        for listener in self._listeners:
            try:
                listener(signal)
            except Exception:  # a broken consumer must not stop the watch loop
                log.exception("agent_listener_failed", node_id=signal.node_id)

    async def start(self) -> None:
        """Begin the liveness ticker."""
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick_forever(), name="node-liveness")

    async def close(self) -> None:
        """Stop every watch and close every client."""
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        if self._ticker is not None:
            tasks.append(self._ticker)
        await cancel_and_wait(*tasks)
        for connection in self._connections.values():
            await connection.client.close()
        self._connections.clear()
        self._ticker = None

    async def sync(self, endpoints: Iterable[NodeEndpoint]) -> None:
        """Connect to new nodes, drop removed ones, reconnect changed ones."""
        wanted = {e.node_id: e for e in endpoints if e.grpc_address and e.secret}
        for node_id in list(self._connections):
            if wanted.get(node_id) != self._connections[node_id].endpoint:
                await self._drop(node_id)
        for node_id, endpoint in wanted.items():
            if node_id not in self._connections:
                connection = _Connection(endpoint, self._factory(endpoint))
                self._connections[node_id] = connection
                self.liveness.watch(node_id, self._clock())
                connection.task = asyncio.create_task(
                    self._watch_forever(connection), name=f"watch-{node_id}"
                )

    async def _drop(self, node_id: str) -> None:
        connection = self._connections.pop(node_id)
        self.liveness.forget(node_id)
        if connection.task is not None:
            await cancel_and_wait(connection.task)
        await connection.client.close()

    def client(self, node_id: str) -> AgentClient:
        """The client of a connected node; AgentError("unavailable") otherwise."""
        connection = self._connections.get(node_id)
        if connection is None:
            raise AgentError("unavailable", f"node {node_id} is not connected")
        return connection.client

    def node_ids(self) -> list[str]:
        """The nodes the pool is connected (or connecting) to."""
        return list(self._connections)

    def observation(self, node_id: str) -> NodeObservation | None:
        """The node's latest reports (None when not connected)."""
        connection = self._connections.get(node_id)
        return None if connection is None else connection.observation

    def state(self, node_id: str) -> LivenessState:
        """unknown, ready or down."""
        return self.liveness.state(node_id)

    def record_server(self, node_id: str, status: pb.ServerStatus) -> None:
        """Fold the status an action returned into the observation, so the next
        decision does not repeat the action while waiting for a heartbeat."""
        observation = self.observation(node_id)
        if observation is not None and observation.servers is not None and status.id:
            observation.servers[status.id] = status

    def forget_server(self, node_id: str, server_id: str) -> None:
        """The server was removed by an action."""
        observation = self.observation(node_id)
        if observation is not None and observation.servers is not None:
            observation.servers.pop(server_id, None)

    # ---- watch ---------------------------------------------------------------

    async def _watch_forever(self, connection: _Connection) -> None:
        initial, ceiling = self._reconnect
        delay = initial
        node_id = connection.endpoint.node_id
        while True:
            try:
                connection.observation.info = await connection.client.get_node_info()
                connection.servers = None  # a new stream shows them afresh
                async for event in connection.client.watch(self.heartbeat_interval_ms):
                    delay = initial
                    self._on_event(connection, event)
                log.info("agent_watch_ended", node_id=node_id)
            except AgentError as exc:
                log.info("agent_watch_failed", node_id=node_id, code=exc.code)
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
            delay = min(ceiling, delay * 2)

    def _on_event(self, connection: _Connection, event: pb.WatchEvent) -> None:
        node_id = connection.endpoint.node_id
        now = self._clock()
        for transition in self.liveness.heard(node_id, now):
            self._transition(transition)
        observation = connection.observation
        which = event.WhichOneof("event")
        if which == "heartbeat":
            beat = event.heartbeat
            observation.host = beat.host
            observation.last_heartbeat = now
            observation.routes_version = beat.routes_version
            observation.stats = {s.id: s for s in beat.stats}
            if not beat.servers_unchanged:
                connection.servers = {s.id: s for s in beat.servers}
                digest = _digest(beat.servers)
            elif connection.servers is None:
                return  # "unchanged" from nothing shown: never sent by a sound agent
            elif connection.digest:
                digest = connection.digest  # no change: no digest to take again
            else:
                digest = _digest(connection.servers.values())  # back from down
            observation.servers = connection.servers
            if digest != connection.digest:
                connection.digest = digest
                self._emit(NodeSignal(node_id, "changed"))
        elif which == "lifecycle":
            lifecycle = event.lifecycle
            if connection.servers is not None:
                gone = lifecycle.kind == pb.LIFECYCLE_KIND_REMOVED or (
                    # A failed pull of a new server leaves nothing behind.
                    lifecycle.kind == pb.LIFECYCLE_KIND_PULL_FAILED
                    and not lifecycle.status.container_id
                )
                if gone:
                    connection.servers.pop(lifecycle.server_id, None)
                elif lifecycle.status.id:
                    connection.servers[lifecycle.server_id] = lifecycle.status
            self._emit(NodeSignal(node_id, "lifecycle", lifecycle))

    def _transition(self, transition: Transition) -> None:
        log.info(
            "node_liveness",
            node_id=transition.node_id,
            before=transition.before,
            after=transition.after,
        )
        if transition.after == "down":
            connection = self._connections.get(transition.node_id)
            if connection is not None:
                connection.observation.servers = None
                connection.digest = ()
        self._emit(NodeSignal(transition.node_id, "up" if transition.after == "ready" else "down"))

    async def _tick_forever(self) -> None:
        period = max(0.05, min(1.0, self.liveness.grace / 4))
        while True:
            await asyncio.sleep(period)
            for transition in self.liveness.tick(self._clock()):
                self._transition(transition)
