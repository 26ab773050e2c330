"""The reconciler's thin shell: load desired state, ask :func:`decide`, persist its
bookkeeping, carry out its agent actions, publish status changes.

It runs on a timer, whenever :meth:`Reconciler.wake` is called (an API change) and
whenever an agent reports a change or a call of a pass ends, so new work starts at
once. Only the first kind reloads the desired state: a pass for an agent's report
decides on the rows already loaded (which the reconciler's own writes keep current),
so a busy fleet does not read every table for every heartbeat; the timer reloads them
at least every `interval` for changes made without a wake-up. Desired state and replica->node
assignments are written to the database *before* the agents are told, so a control
plane that dies at any moment resumes where it stopped: the next pass sees the same
rows and the agents' real containers, and repeats only what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.cancellation import wait_set
from common.logging import get_logger
from controlplane.agents import AgentPool, NodeEndpoint, NodeSignal
from controlplane.db.engine import Database, writes_go_first
from controlplane.db.tables import Deployment, Node, ReleasedVolume, Replica
from controlplane.events.bus import Event, EventBus
from controlplane.events.deployment_events import deployment_status_changed
from controlplane.placement import (
    Fence,
    PlacementApplier,
    PlacementRefused,
    Proposal,
    task_claims,
)
from controlplane.reconciler.calls import AgentCalls
from controlplane.reconciler.decide import decide
from controlplane.reconciler.model import (
    Action,
    AddReplica,
    AgentAction,
    BackoffPolicy,
    ForgetReplica,
    RecordCrash,
    RestoreData,
    WaitForNode,
    World,
)
from controlplane.reconciler.node_loss import RESTORE_PENDING, LatestBackupRestore, SlotRestore
from controlplane.reconciler.node_writes import NodeWrites
from controlplane.reconciler.pass_gate import PassGate
from controlplane.reconciler.pulls import PULL_KINDS, PullReports
from controlplane.reconciler.status import (
    CallOutcomes,
    RecordedStatus,
    deployment_reports,
    next_recorded,
)
from controlplane.reconciler.world import Rows, epoch_seconds, world_of
from controlplane.scheduler import Claim
from controlplane.security.registry_credentials import RegistryCredentials

log = get_logger(__name__)


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
        placement: PlacementApplier | None = None,
        registry: RegistryCredentials | None = None,
        fence: Fence | None = None,
        latest_backup: LatestBackupRestore | None = None,
    ) -> None:
        self.database = database
        # With several control planes: the leader's epoch check, run in each write's
        # own transaction so that a deposed leader's late writes are refused.
        self._fence = fence
        self.pool = pool
        self.bus = bus
        self.interval = interval
        self.backoff = backoff or BackoffPolicy()
        self._clock = clock
        self._wake = asyncio.Event()
        self._gate = PassGate()
        self._next_deadline: float | None = None
        # Slots moved after node loss: their latest backup, restored off the passes
        # into their stopped container before it first starts.
        self.restore = SlotRestore(
            database, latest_backup, bus=bus, fence=fence, on_finished=self.wake, clock=clock
        )
        self.calls = AgentCalls(pool, self.backoff, clock, self._nudge, registry)
        self.placement = placement or PlacementApplier(database, pool)
        self.pulls = PullReports(self.calls, self._publish, clock)
        self.node_writes = NodeWrites(database, pool, clock=clock, bus=bus, fence=fence)
        self.passes = 0
        self.loads = 0
        self._rows: Rows | None = None
        self._rows_loaded_at = 0.0
        self._desired_changed = True
        pool.add_listener(self._on_signal)

    def wake(self) -> None:
        """Ask for a pass as soon as possible that reloads the desired state: call it
        after changing deployments, replicas or nodes (cheap; coalesces)."""
        self._desired_changed = True
        self._wake.set()

    def _nudge(self) -> None:
        # The agents' side changed (a report, a call ended), not the rows.
        self._wake.set()

    def _on_signal(self, signal: NodeSignal) -> None:
        if signal.kind == "up":
            self.calls.failed.node_returned(signal.node_id)
        lifecycle = signal.lifecycle
        pull = lifecycle is not None and lifecycle.kind in PULL_KINDS
        if pull and lifecycle is not None and not self.pulls.heard(lifecycle):
            return  # progress changes no decision
        self._nudge()

    async def run(self) -> None:
        """Reconcile forever: on wake-up, on back-off deadlines, and every `interval`.
        Cancelling it also cancels the agent calls still in flight."""
        try:
            while True:
                timeout = self.interval
                if self._next_deadline is not None:
                    timeout = max(0.0, min(timeout, self._next_deadline - self._clock()))
                await wait_set(self._wake, timeout)
                self._wake.clear()
                try:
                    await self.reconcile_once()
                except Exception:  # one bad pass must not end reconciliation
                    log.exception("reconcile_failed")
        finally:
            await self.calls.cancel()
            await self.restore.cancel()

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No pass runs and no agent call of a pass is in flight inside the block: for
        API changes that act on agents themselves (deleting a deployment), so that a
        pass that loaded the rows before the change cannot recreate what it removes.
        Such blocks run side by side (controlplane/reconciler/pass_gate.py)."""
        # A pass waiting for the gate also waits for the block's transactions: they
        # go ahead of the other writers (on SQLite).
        async with self._gate.change():
            await self.idle()
            try:
                with writes_go_first():
                    yield
            finally:
                self._desired_changed = True  # the block changed rows behind the cache

    async def idle(self) -> None:
        """Wait until no agent call started by a pass is still running."""
        await self.calls.idle()

    async def reconcile_once(self) -> list[Action]:
        """One level-triggered pass; returns the actions it took."""
        async with self._gate.one_pass():
            try:
                return await self._pass()
            except BaseException:
                self._desired_changed = True  # the cached rows may be half updated
                raise

    async def _pass(self) -> list[Action]:
        """Load (or reuse) the rows, decide, persist, dispatch, record."""
        rows = await self._current_rows()
        await self.pulls.pin_digests(self.database, rows)
        await self.pool.sync(
            NodeEndpoint(str(n.id), n.grpc_address, n.secret or "") for n in rows.nodes.values()
        )
        world = world_of(
            rows.deployments.values(),
            rows.replicas.values(),
            rows.nodes.values(),
            self.pool,
            rows.claims,
        )
        now = self._clock()
        decided = decide(world, now, lambda: str(uuid.uuid4()), self.backoff)
        actions = self.calls.left_alone(rows, decided, now)
        try:
            await self._persist(rows, actions)
        except (IntegrityError, PlacementRefused) as exc:
            # An API call changed the rows under this pass (e.g. deleted the
            # deployment it was placing), or a task took the room it was placing
            # into: decide again from fresh rows.
            log.info("reconcile_raced", reason=type(exc).__name__)
            self.wake()
            return []
        self.calls.dispatch(rows, [a for a in actions if isinstance(a, AgentAction)])
        self._request_restores(rows, actions, now)
        if actions:
            log.debug("reconciled", actions=len(actions), seconds=round(self._clock() - now, 3))
        await self._record_statuses(rows, world, actions)
        await self.node_writes.record(rows.nodes)
        self._next_deadline = self._earliest_deadline(rows, now, actions)
        self.passes += 1
        return actions

    def _request_restores(self, rows: Rows, actions: list[Action], now: float) -> None:
        """Hand the pass's RestoreData to the restore runner (it runs them off the pass)."""
        self.restore.keep_only(rows.replicas.keys())
        for action in actions:
            if isinstance(action, RestoreData):
                replica = rows.replicas[action.replica_id]
                deployment = rows.deployments[str(replica.deployment_id)]
                self.restore.request(replica, deployment, action.node_id, now)

    def _earliest_deadline(self, rows: Rows, now: float, actions: list[Action]) -> float | None:
        deadlines = [r.backoff_until.timestamp() for r in rows.replicas.values() if r.backoff_until]
        deadlines += [a.move_at for a in actions if isinstance(a, WaitForNode) and a.move_at]
        if (retry := self.calls.failed.next_retry(now)) is not None:
            deadlines.append(retry)
        if (retry := self.restore.next_retry(now)) is not None:
            deadlines.append(retry)
        return min(deadlines, default=None)

    async def _current_rows(self) -> Rows:
        """The rows loaded by an earlier pass, or fresh ones after a wake-up, a raced
        pass, or `interval` seconds."""
        stale = time.monotonic() - self._rows_loaded_at >= self.interval
        if self._rows is None or self._desired_changed or stale:
            self._desired_changed = False  # before the load: a change meanwhile wakes again
            self._rows = await self._load()
            self._rows_loaded_at = time.monotonic()
            self.loads += 1
        return self._rows

    async def _load(self) -> Rows:
        async with self.database.session() as session:
            deployments = (await session.exec(select(Deployment))).all()
            replicas = (await session.exec(select(Replica))).all()
            nodes = (await session.exec(select(Node))).all()
            claims = await task_claims(session)
        return Rows(
            deployments={str(d.id): d for d in deployments},
            replicas={str(r.id): r for r in replicas},
            nodes={str(n.id): n for n in nodes},
            claims=claims,
        )

    async def _persist(self, rows: Rows, actions: list[Action]) -> None:
        """Write the pass's bookkeeping and its placements in one commit at the
        placement commit point (PlacementRefused: nothing written)."""
        changes = [a for a in actions if isinstance(a, ForgetReplica | RecordCrash)]
        added = [a for a in actions if isinstance(a, AddReplica)]
        if not changes and not added:
            return

        async def bookkeeping(session: AsyncSession) -> None:
            for action in changes:
                if isinstance(action, ForgetReplica):
                    await session.exec(
                        delete(Replica).where(col(Replica.id) == uuid.UUID(action.replica_id))
                    )
                    forgotten = rows.replicas.pop(action.replica_id, None)
                    if action.released_volume and forgotten is not None:
                        owner = rows.deployments.get(str(forgotten.deployment_id))
                        user = owner.user_id if owner is not None else None
                        await session.merge(ReleasedVolume.of(forgotten, user))
                else:
                    replica = rows.replicas[action.replica_id]
                    replica.restart_count = action.restart_count
                    replica.crash_streak = action.crash_streak
                    replica.handled_exit_ms = action.handled_exit_ms
                    replica.backoff_until = _at(action.backoff_until)
                    replica.start_issued_at = _at(action.start_issued_at)
                    session.add(replica)

        await self.placement.commit(
            [self._proposal(rows, action) for action in added],
            before=bookkeeping,
            fence=self._fence,
        )

    def _proposal(self, rows: Rows, action: AddReplica) -> Proposal:
        deployment = rows.deployments[action.deployment_id]
        claim = Claim(
            node_id=action.node_id,
            cpu_millis=deployment.cpu_millis,
            memory_bytes=deployment.memory_bytes,
            host_ports=action.host_ports,
            group=action.deployment_id,
            disk_bytes=deployment.disk_bytes,
        )

        async def write(session: AsyncSession) -> None:
            replica = Replica(
                id=uuid.UUID(action.replica_id),
                deployment_id=uuid.UUID(action.deployment_id),
                ordinal=action.ordinal,
                node_id=uuid.UUID(action.node_id),
                host_ports=list(action.host_ports),
                volume_id=uuid.UUID(action.volume_id or action.replica_id),
                restore_state=RESTORE_PENDING if action.restore else "",
            )
            session.add(replica)
            rows.replicas[action.replica_id] = replica

        return Proposal(action.replica_id, claim, write)

    async def _record_statuses(self, rows: Rows, world: World, actions: list[Action]) -> None:
        errors = {**self.calls.errors, **self.restore.errors}  # a failed restore too
        outcomes = CallOutcomes(errors, self.calls.permanent)
        now = self._clock()
        changed: list[tuple[Deployment, str]] = []  # with the status it was read with
        for deployment_id, report in deployment_reports(world, actions, outcomes).items():
            row = rows.deployments[deployment_id]
            recorded = RecordedStatus(row.status, row.error_message, epoch_seconds(row.deployed_at))
            new = next_recorded(recorded, report, now)
            if new is None:
                continue
            read_status = row.status
            row.status, row.error_message = new.status, new.error_message
            if new.error_message:
                row.error_code = (
                    _error_code(self.calls.codes, world, deployment_id) or row.error_code
                )
            row.deployed_at = _at(new.deployed_at)
            changed.append((row, read_status))
        if not changed:
            return
        async with self.database.transaction() as session:
            if self._fence is not None:
                await self._fence(session)
            written: list[Deployment] = []
            for row, read_status in changed:
                # Only over the status this pass read: a stop or an update the API
                # wrote meanwhile wins, and the next pass derives from it.
                result = await session.exec(
                    update(Deployment)
                    .where(col(Deployment.id) == row.id)
                    .where(col(Deployment.status) == read_status)
                    .values(
                        status=row.status,
                        error_message=row.error_message,
                        error_code=row.error_code,
                        deployed_at=row.deployed_at,
                    )
                )
                if result.rowcount == 1:
                    written.append(row)
            for row in written:
                await self._record(session, deployment_status_changed(row))

    def _publish(self, event: Event) -> None:
        if self.bus is not None:
            self.bus.publish(event)

    async def _record(self, session: AsyncSession, event: Event) -> None:
        """Write `event` in `session`'s transaction (the change it describes)."""
        if self.bus is not None:
            await self.bus.record(session, event)


def _error_code(codes: dict[str, str], world: World, deployment_id: str) -> str | None:
    """The code of the first replica error of the deployment."""
    return next(
        (codes[r.id] for r in world.replicas if r.deployment_id == deployment_id and r.id in codes),
        None,
    )
