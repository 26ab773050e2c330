"""The reconciler's thin shell: load desired state, ask :func:`decide`, persist its
bookkeeping, carry out its agent actions, publish status changes.

It runs on a timer and whenever :meth:`Reconciler.wake` is called (an API change, an
agent's report), so new work starts at once. Desired state and replica->node
assignments are written to the database *before* the agents are told, so a control
plane that dies at any moment resumes where it stopped: the next pass sees the same
rows and the agents' real containers, and repeats only what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime

from google.protobuf.json_format import MessageToDict
from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from common.logging import get_logger
from controlplane.agents import AgentPool, NodeEndpoint, NodeSignal
from controlplane.db.engine import Database
from controlplane.db.tables import Deployment, Node, Replica, Task
from controlplane.db.tables.tasks import RUNNING as TASK_RUNNING
from controlplane.events.bus import Event, EventBus, EventType
from controlplane.reconciler.calls import AgentCalls
from controlplane.reconciler.decide import decide
from controlplane.reconciler.model import (
    Action,
    AddReplica,
    AgentAction,
    BackoffPolicy,
    DesiredReplica,
    ForgetReplica,
    ObservedServer,
    RecordCrash,
    Unschedulable,
    World,
)
from controlplane.reconciler.pulls import PULL_KINDS, PullReports
from controlplane.reconciler.status import deployment_status
from controlplane.reconciler.world import Rows, world_of
from controlplane.security.registry_credentials import RegistryCredentials
from protos import agent_pb2 as pb

log = get_logger(__name__)
NODE_WRITE_INTERVAL = 5.0


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class Reconciler:
    """Converges deployments onto the agents. :meth:`run` is the background loop
    (cancel it to stop); :meth:`reconcile_once` one pass, serialised with others."""

    def __init__(
        self,
        database: Database,
        pool: AgentPool,
        *,
        bus: EventBus | None = None,
        interval: float = 2.0,
        backoff: BackoffPolicy | None = None,
        clock: Callable[[], float] = time.time,
        registry: RegistryCredentials | None = None,
    ) -> None:
        self.database = database
        self.pool = pool
        self.bus = bus
        self.interval = interval
        self.backoff = backoff or BackoffPolicy()
        self._clock = clock
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._next_deadline: float | None = None
        self._node_written: dict[str, float] = {}
        self.calls = AgentCalls(pool, self.backoff, clock, self.wake, registry)
        self.pulls = PullReports(self.calls, self._publish, clock)
        self.passes = 0
        pool.add_listener(self._on_signal)

    def wake(self) -> None:
        """Ask for a pass as soon as possible (cheap; coalesces)."""
        self._wake.set()

    def _on_signal(self, signal: NodeSignal) -> None:
        if signal.kind == "up":
            self.calls.failed.node_returned(signal.node_id)
        lifecycle = signal.lifecycle
        pull = lifecycle is not None and lifecycle.kind in PULL_KINDS
        if pull and lifecycle is not None and not self.pulls.heard(lifecycle):
            return  # progress changes no decision
        self.wake()

    async def run(self) -> None:
        """Reconcile forever: on wake-up, on back-off deadlines, and every `interval`.
        Cancelling it also cancels the agent calls still in flight."""
        try:
            while True:
                timeout = self.interval
                if self._next_deadline is not None:
                    timeout = max(0.0, min(timeout, self._next_deadline - self._clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                try:
                    await self.reconcile_once()
                except Exception:  # one bad pass must not end reconciliation
                    log.exception("reconcile_failed")
        finally:
            await self.calls.cancel()

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No pass runs and no agent call of a pass is in flight inside the block: for
        API changes that act on agents themselves (deleting a deployment), so that a
        pass that loaded the rows before the change cannot recreate what it removes."""
        async with self._lock:
            await self.idle()
            yield

    async def idle(self) -> None:
        """Wait until no agent call started by a pass is still running."""
        await self.calls.idle()

    async def reconcile_once(self) -> list[Action]:
        """One level-triggered pass; returns the actions it took."""
        async with self._lock:
            rows = await self._load()
            await self.pulls.pin_digests(self.database, rows)
            await self.pool.sync(
                NodeEndpoint(str(n.id), n.grpc_address, n.secret or "") for n in rows.nodes.values()
            )
            world = world_of(
                rows.deployments.values(),
                rows.replicas.values(),
                rows.nodes.values(),
                self.pool,
                rows.reserved,
            )
            now = self._clock()
            decided = decide(world, now, lambda: str(uuid.uuid4()), self.backoff)
            actions = self.calls.left_alone(rows, decided, now)
            try:
                await self._persist(rows, actions)
            except IntegrityError:
                # An API call changed the rows under this pass (e.g. deleted the
                # deployment it was placing): decide again from fresh rows.
                log.info("reconcile_raced")
                self.wake()
                return []
            self.calls.dispatch(rows, [a for a in actions if isinstance(a, AgentAction)])
            if actions:
                log.debug("reconciled", actions=len(actions), seconds=round(self._clock() - now, 3))
            await self._record_statuses(rows, world, actions)
            await self._record_nodes(rows)
            deadlines = [
                r.backoff_until.timestamp() for r in rows.replicas.values() if r.backoff_until
            ]
            if (retry := self.calls.failed.next_retry(now)) is not None:
                deadlines.append(retry)
            self._next_deadline = min(deadlines, default=None)
            self.passes += 1
            return actions

    async def _load(self) -> Rows:
        running_tasks = (
            select(Task.node_id, func.sum(Task.cpu_millis), func.sum(Task.memory_bytes))
            .where(col(Task.status) == TASK_RUNNING, col(Task.node_id).is_not(None))
            .group_by(col(Task.node_id))
        )
        async with self.database.session() as session:
            deployments = (await session.exec(select(Deployment))).all()
            replicas = (await session.exec(select(Replica))).all()
            nodes = (await session.exec(select(Node))).all()
            tasks = (await session.exec(running_tasks)).all()
        return Rows(
            deployments={str(d.id): d for d in deployments},
            replicas={str(r.id): r for r in replicas},
            nodes={str(n.id): n for n in nodes},
            reserved={str(n): (int(c or 0), int(m or 0)) for n, c, m in tasks},
        )

    async def _persist(self, rows: Rows, actions: Iterable[Action]) -> None:
        changes = [a for a in actions if isinstance(a, AddReplica | ForgetReplica | RecordCrash)]
        if not changes:
            return
        async with self.database.transaction() as session:
            for action in changes:
                if isinstance(action, AddReplica):
                    replica = Replica(
                        id=uuid.UUID(action.replica_id),
                        deployment_id=uuid.UUID(action.deployment_id),
                        ordinal=action.ordinal,
                        node_id=uuid.UUID(action.node_id),
                        host_ports=list(action.host_ports),
                    )
                    session.add(replica)
                    rows.replicas[action.replica_id] = replica
                elif isinstance(action, ForgetReplica):
                    await session.exec(
                        delete(Replica).where(col(Replica.id) == uuid.UUID(action.replica_id))
                    )
                    rows.replicas.pop(action.replica_id, None)
                else:
                    replica = rows.replicas[action.replica_id]
                    replica.restart_count = action.restart_count
                    replica.crash_streak = action.crash_streak
                    replica.handled_exit_ms = action.handled_exit_ms
                    replica.backoff_until = _at(action.backoff_until)
                    replica.start_issued_at = _at(action.start_issued_at)
                    session.add(replica)

    async def _record_statuses(self, rows: Rows, world: World, actions: list[Action]) -> None:
        unschedulable = {a.deployment_id for a in actions if isinstance(a, Unschedulable)}
        crashes = {a.replica_id: a for a in actions if isinstance(a, RecordCrash)}
        # Judge by the bookkeeping this pass just wrote, not the state it started from.
        world = dataclasses.replace(
            world,
            replicas=[
                dataclasses.replace(r, crash_streak=crashes[r.id].crash_streak)
                if r.id in crashes
                else r
                for r in world.replicas
            ],
        )
        changed: list[Deployment] = []
        for deployment_id, status in statuses_of(world, unschedulable).items():
            row = rows.deployments[deployment_id]
            error = next(
                (
                    self.calls.errors[r.id]
                    for r in world.replicas
                    if r.deployment_id == deployment_id and r.id in self.calls.errors
                ),
                "no node can take a replica now" if deployment_id in unschedulable else None,
            )
            code = _error_code(self.calls.codes, world, deployment_id) if error else None
            if status in ("pending", "updating") and any(
                r.id in self.calls.permanent
                for r in world.replicas
                if r.deployment_id == deployment_id
            ):
                status = "failed"  # e.g. an image the registry does not have
            if status != row.status or (error and error != row.error_message):
                changed.append(row)
                row.status, row.error_message = status, error or row.error_message
                row.error_code = code or row.error_code
                if status == "running" and row.deployed_at is None:
                    row.deployed_at = datetime.now(UTC)
        if not changed:
            return
        async with self.database.transaction() as session:
            for row in changed:
                await session.exec(
                    update(Deployment)
                    .where(col(Deployment.id) == row.id)
                    .values(
                        status=row.status,
                        error_message=row.error_message,
                        error_code=row.error_code,
                        deployed_at=row.deployed_at,
                    )
                )
        for row in changed:
            self._publish(
                Event(
                    EventType.DEPLOYMENT_STATUS_CHANGED,
                    owner_id=str(row.user_id),
                    deployment_id=str(row.id),
                    data={"status": row.status, "app_name": row.app_name},
                )
            )

    async def _record_nodes(self, rows: Rows) -> None:
        now = self._clock()
        updates: list[tuple[Node, dict[str, object]]] = []
        for node_id, node in rows.nodes.items():
            liveness = self.pool.state(node_id)
            if node.status == "pending" or liveness == "unknown":
                continue
            values: dict[str, object] = {}
            if liveness != node.status:
                values["status"] = liveness
            heard = self.pool.liveness.last_heard(node_id)
            if (
                heard is not None
                and now - self._node_written.get(node_id, 0.0) >= NODE_WRITE_INTERVAL
            ):
                values["last_seen"] = _at(heard)
                observation = self.pool.observation(node_id)
                if observation is not None and observation.host is not None:
                    values["host_stats"] = _host_stats(observation.host)
                self._node_written[node_id] = now
            if values:
                updates.append((node, values))
        if not updates:
            return
        async with self.database.transaction() as session:
            for node, values in updates:
                await session.exec(update(Node).where(col(Node.id) == node.id).values(**values))
        for node, values in updates:
            if "status" in values:
                kind = EventType.NODE_UP if values["status"] == "ready" else EventType.NODE_DOWN
                self._publish(Event(kind, node_id=str(node.id), data={"name": node.name}))

    def _publish(self, event: Event) -> None:
        if self.bus is not None:
            self.bus.publish(event)


def statuses_of(world: World, unschedulable: set[str]) -> dict[str, str]:
    """Each deployment's derived status (see :func:`deployment_status`)."""
    observed = {
        server_id: server
        for view in world.nodes.values()
        for server_id, server in (view.servers or {}).items()
    }
    pairs: dict[str, list[tuple[DesiredReplica, ObservedServer | None]]] = {}
    for replica in world.replicas:
        pairs.setdefault(replica.deployment_id, []).append((replica, observed.get(replica.id)))
    return {
        deployment_id: deployment_status(
            desired,
            pairs.get(deployment_id, []),
            unschedulable=deployment_id in unschedulable,
        )
        for deployment_id, desired in world.deployments.items()
    }


def _error_code(codes: dict[str, str], world: World, deployment_id: str) -> str | None:
    """The code of the first replica error of the deployment."""
    return next(
        (codes[r.id] for r in world.replicas if r.deployment_id == deployment_id and r.id in codes),
        None,
    )


def _host_stats(host: pb.HostStats) -> dict[str, object]:
    return MessageToDict(host, preserving_proto_field_name=True)
