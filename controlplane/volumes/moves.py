"""Moving a slot between two live nodes with its data (docs/stateful.md, "Transfers").

:meth:`SlotMover.move` does, in order: choose the target (given, or placed like any
replica, away from the source) and its host ports; mark the replica as moving
(`replicas.transfer`: the reconciler leaves a moving slot alone while the mark is
fresh, see `DesiredReplica.transfer_until`); stop the slot on the source; have the
source agent stream its volume to the target agent (`SendVolume`, authorised by a
`transfer` token signed with the target's secret; compressed, SHA-256 checked by the
target); remove the source's container (its data stays); create and start it on the
target and wait until it runs; commit the new place through the placement commit
point; and only then delete the source's copy of the data. A failure at any step
before the commit removes what the target got and makes the slot run again where it
was (its container made again if it was removed): it keeps running there, and the
error is kept on the replica (`transfer.error`) and sent as `replica_move_failed`.
Progress goes to the row (at most every second) and to the event feed
(`replica_transfer_progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select, update

from common.logging import get_logger
from common.tokens import sign_server_token
from controlplane.agents import AgentClient, AgentError, AgentPool
from controlplane.db.engine import Database
from controlplane.db.tables import Deployment, Node, Replica
from controlplane.db.types import utcnow
from controlplane.events.bus import Event, EventBus, EventType
from controlplane.placement import Fence, PlacementApplier, PlacementRefused, Proposal
from controlplane.reconciler.model import TRANSFER_LEASE_SECONDS
from controlplane.reconciler.world import server_spec
from controlplane.scheduler import Claim, PlacementIndex, PlacementRequest
from protos import agent_pb2 as pb

log = get_logger(__name__)
START_TIMEOUT = 60.0
PROGRESS_EVERY = 1.0


class MoveRefused(Exception):
    """The move cannot begin (`code` for the API); nothing was touched."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class MoveFailed(Exception):
    """The move failed after it began; the slot runs where it was."""


@dataclass(frozen=True, slots=True)
class MovePlan:
    """Where slot `replica` of `deployment` goes."""

    deployment: Deployment
    replica: Replica
    source: str
    target: Node
    host_ports: tuple[int, ...]


class SlotMover:
    """Moves slots between live nodes (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        pool: AgentPool,
        placement: PlacementApplier,
        bus: EventBus | None = None,
        *,
        fence: Fence | None = None,
        password_of: Callable[[Deployment], str | None] = lambda deployment: None,
        wake: Callable[[], None] = lambda: None,
        hold: Callable[[], AbstractAsyncContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self.database, self.pool, self.placement = database, pool, placement
        self.bus, self._fence = bus, fence
        self._password_of, self._wake, self._hold = password_of, wake, hold
        self.moving: set[str] = set()  # replica ids with a move under way here
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, plan: MovePlan) -> None:
        """Run the move of `plan` in the background (its failure is recorded, never
        raised); :meth:`close` cancels what still runs."""
        self.moving.add(str(plan.replica.id))  # a second request is refused at once
        task = asyncio.create_task(self._background(plan), name=f"move-{plan.replica.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _background(self, plan: MovePlan) -> None:
        with contextlib.suppress(MoveFailed):
            await self.move(plan)

    async def close(self) -> None:
        """Cancel the moves still under way and wait for them."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def plan(self, deployment_id: uuid.UUID, ordinal: int, target: str | None) -> MovePlan:
        """Check the move and choose the target; MoveRefused says why not."""
        async with self.database.session() as session:
            deployment = await session.get(Deployment, deployment_id)
            found = await session.exec(
                select(Replica).where(
                    col(Replica.deployment_id) == deployment_id, col(Replica.ordinal) == ordinal
                )
            )
            replica = found.first()
            nodes = {str(n.id): n for n in (await session.exec(select(Node))).all()}
        if deployment is None or replica is None:
            raise MoveRefused("replica_not_found", f"the deployment has no replica {ordinal}")
        if replica.node_id is None:
            raise MoveRefused("replica_not_placed", "the replica is not placed on any node")
        source = str(replica.node_id)
        if str(replica.id) in self.moving or _moving(replica):  # here, or elsewhere
            raise MoveRefused("move_in_progress", "the replica is being moved already")
        if self.pool.state(source) != "ready":
            raise MoveRefused("node_unreachable", "the replica's node does not answer")
        if target is not None:
            node = nodes.get(target)
            if node is None:
                raise MoveRefused("node_not_found", "no such node")
            if target == source:
                raise MoveRefused("same_node", "the replica runs on that node already")
            if self.pool.state(target) != "ready" or node.draining:
                raise MoveRefused("node_unavailable", "that node is not ready for new work")
        where = await self._place(deployment, source, target)
        if where is None:
            raise MoveRefused("no_feasible_node", "no other node can take the replica now")
        node_id, ports = where
        return MovePlan(deployment, replica, source, nodes[node_id], ports)

    async def _place(
        self, deployment: Deployment, source: str, target: str | None
    ) -> tuple[str, tuple[int, ...]] | None:
        snapshot = await self.placement.snapshot()
        if target is not None:
            snapshot = type(snapshot)(
                nodes=[n for n in snapshot.nodes if n.id == target],
                group_counts=snapshot.group_counts,
            )
        request = PlacementRequest(
            replica_ids=["move"],
            cpu_millis=deployment.cpu_millis,
            memory_bytes=deployment.memory_bytes,
            port_count=len(deployment.ports),
            disk_bytes=deployment.disk_bytes,
            constraints=dict(deployment.constraints) if target is None else {},
            strategy="spread" if deployment.strategy == "spread" else "binpack",
            group=str(deployment.id),
            avoid_nodes=frozenset({source}),
        )
        plan = PlacementIndex(snapshot).place(request)
        if not plan.placements:
            return None
        return plan.placements[0].node_id, plan.placements[0].host_ports

    async def move(self, plan: MovePlan) -> None:
        """Carry out `plan`; MoveFailed (the slot running where it was) on failure."""
        replica_id = str(plan.replica.id)
        self.moving.add(replica_id)
        started = time.monotonic()
        try:
            async with self._hold():  # no pass acts on rows from before the mark
                await self._mark(plan, phase="stopping")
            was_running = False
            try:
                was_running = await self._stop_source(plan)
                await self._transfer(plan)
                # Before the target's: one engine may serve both nodes (container
                # names are replica ids). The source's data stays until the commit.
                await self.pool.client(plan.source).remove_server(replica_id)
                await self._start_on_target(plan)
                await self._commit(plan)
            except (AgentError, PlacementRefused, TimeoutError, MoveFailed) as exc:
                message = _reason(exc)
                await self._undo(plan, was_running, message)
                raise MoveFailed(message) from exc
            await self._delete_source_copy(plan)
        finally:
            self.moving.discard(replica_id)
        log.info("slot_moved", replica=replica_id, seconds=round(time.monotonic() - started, 2))

    async def _stop_source(self, plan: MovePlan) -> bool:
        client = self.pool.client(plan.source)
        server = await client.get_server(str(plan.replica.id))
        running = server.status.state != pb.SERVER_STATE_OFFLINE
        if running:
            await client.stop_server(str(plan.replica.id))
        return running

    async def _transfer(self, plan: MovePlan) -> None:
        volume = str(plan.replica.slot_volume)
        token = sign_server_token(
            plan.target.secret or "",
            node_id=str(plan.target.id),
            user_id=str(plan.deployment.user_id),
            server_id=volume,
            permissions=[],
            scope="transfer",
            ttl_seconds=600,
        )
        await self._mark(plan, phase="transferring")
        last = 0.0
        source = self.pool.client(plan.source)
        async for progress in source.send_volume(volume, plan.target.http_address, token):
            if progress.done or time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                await self._progress(plan, progress)

    async def _start_on_target(self, plan: MovePlan) -> None:
        await self._mark(plan, phase="starting")
        moved = Replica(**{**plan.replica.model_dump(), "host_ports": list(plan.host_ports)})
        target = self.pool.client(str(plan.target.id))
        spec = server_spec(
            plan.deployment, moved, str(plan.target.id), self._password_of(plan.deployment)
        )
        await target.create_server(spec, start=plan.deployment.running)
        if not plan.deployment.running:
            return
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                status = (await target.get_server(spec.id)).status
                if status.state == pb.SERVER_STATE_RUNNING:
                    return
                if status.exited:
                    raise MoveFailed(f"it exited on the target with code {status.exit_code}")
                await asyncio.sleep(0.2)

    async def _commit(self, plan: MovePlan) -> None:
        d = plan.deployment
        target = str(plan.target.id)
        claim = Claim(
            node_id=target,
            cpu_millis=d.cpu_millis,
            memory_bytes=d.memory_bytes,
            host_ports=plan.host_ports,
            group=str(d.id),
            disk_bytes=d.disk_bytes,
        )

        async def write(session: Any) -> None:
            await session.exec(
                update(Replica)
                .where(col(Replica.id) == plan.replica.id)
                .values(
                    node_id=uuid.UUID(target),
                    host_ports=list(plan.host_ports),
                    transfer=None,
                    restore_state="",
                    restore_note=None,
                )
            )

        await self.placement.commit(
            [Proposal(str(plan.replica.id), claim, write)], fence=self._fence
        )
        self._wake()

    async def _delete_source_copy(self, plan: MovePlan) -> None:
        """After the commit (the slot runs on the target): the source's copy goes."""
        volume = str(plan.replica.slot_volume)
        try:
            await self.pool.client(plan.source).delete_volume(volume)
        except AgentError as exc:  # the sweep deletes it later, as a stale copy
            log.warning("move_source_copy_kept", volume=volume, error=exc.message)
        await self._record(plan, EventType.REPLICA_MOVED, {"from_node_id": plan.source})

    async def _undo(self, plan: MovePlan, was_running: bool, message: str) -> None:
        """Back where it was: the target's container and copy go, the source starts."""
        replica_id, volume = str(plan.replica.id), str(plan.replica.slot_volume)
        target = str(plan.target.id)
        await self._quietly(target, lambda c: c.remove_server(replica_id, delete_data=True))
        await self._quietly(target, lambda c: c.delete_volume(volume))
        await self._quietly(plan.source, lambda c: self._restart_source(c, plan, was_running))
        await self._mark(plan, phase="failed", error=message)
        await self._record(plan, EventType.REPLICA_MOVE_FAILED, {"error": message})
        self._wake()

    async def _restart_source(self, client: AgentClient, plan: MovePlan, running: bool) -> None:
        """The slot where it was, as it was: its container made again if it was
        removed already (its data is still there), started if it ran."""
        try:
            await client.get_server(str(plan.replica.id))
        except AgentError as exc:
            if exc.code != "not_found":
                raise
            spec = server_spec(
                plan.deployment, plan.replica, plan.source, self._password_of(plan.deployment)
            )
            await client.create_server(spec, start=running)
            return
        if running:
            await client.start_server(str(plan.replica.id))

    async def _quietly(
        self, node_id: str, call: Callable[[AgentClient], Awaitable[object]]
    ) -> None:
        """One step of an undo: a node that cannot do it now is left to the sweep and
        the reconciler (logged)."""
        try:
            await call(self.pool.client(node_id))
        except AgentError as exc:
            log.info("move_undo_step_failed", node=node_id, error=exc.message)

    async def _mark(self, plan: MovePlan, *, phase: str, error: str | None = None) -> None:
        mark = {
            "target_node_id": str(plan.target.id),
            "phase": phase,
            "bytes_sent": 0,
            "volume_bytes": 0,
            "updated_at": time.time(),
            "error": error,
        }
        await self._write_mark(plan, mark)

    async def _progress(self, plan: MovePlan, progress: pb.TransferProgress) -> None:
        mark = {
            "target_node_id": str(plan.target.id),
            "phase": "transferring",
            "bytes_sent": progress.bytes_sent,
            "volume_bytes": progress.volume_bytes,
            "updated_at": time.time(),
            "error": None,
        }
        await self._write_mark(plan, mark)
        if self.bus is not None:
            self.bus.publish(self._event(plan, EventType.REPLICA_TRANSFER_PROGRESS, mark))

    async def _write_mark(self, plan: MovePlan, mark: dict[str, Any]) -> None:
        plan.replica.transfer = mark
        async with self.database.transaction() as session:
            if self._fence is not None:
                await self._fence(session)
            await session.exec(
                update(Replica).where(col(Replica.id) == plan.replica.id).values(transfer=mark)
            )

    def _event(self, plan: MovePlan, kind: EventType, data: dict[str, Any]) -> Event:
        return Event(
            kind,
            owner_id=str(plan.deployment.user_id),
            deployment_id=str(plan.deployment.id),
            data={
                "app_name": plan.deployment.app_name,
                "ordinal": plan.replica.ordinal,
                "replica_id": str(plan.replica.id),
                "node_id": str(plan.target.id),
                **data,
            },
        )

    async def _record(self, plan: MovePlan, kind: EventType, data: dict[str, Any]) -> None:
        if self.bus is None:
            return
        async with self.database.transaction() as session:
            await self.bus.record(
                session, self._event(plan, kind, {**data, "at": utcnow().isoformat()})
            )


def _moving(replica: Replica) -> bool:
    mark = replica.transfer or {}
    active = mark.get("phase") not in (None, "failed")
    return active and time.time() - float(mark.get("updated_at", 0)) < TRANSFER_LEASE_SECONDS


def _reason(exc: BaseException) -> str:
    if isinstance(exc, AgentError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return "it did not start on the target in time"
    if isinstance(exc, PlacementRefused):
        return "the target no longer has room for it"
    return str(exc)
