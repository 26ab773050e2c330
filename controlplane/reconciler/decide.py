"""The reconciler's decisions: desired state vs. observed state -> actions. Pure.

Level-triggered: the answer depends only on the :class:`World` and the clock, never
on what happened before, so running it again (after a crash of the control plane, or
twice in a row) repeats harmless work at worst. Rules, per deployment:

- Slots ``0..replicas-1`` each have one replica; missing ones are placed (through the
  scheduler's :class:`PlacementIndex`, shared by the whole pass), extra ones removed.
- A replica whose node is down waits for it when its deployment says
  `on_node_loss = "wait"` (until `move_after`, if set); otherwise (`move`, or a node
  that is gone) it moves to a live node as a new replica of the same slot, with the
  slot's volume id (its data directory and SFTP login) and its latest backup to
  restore there first (`AddReplica.restore`): its container is created stopped, the
  restore is asked for (`RestoreData`, carried out off the pass) and the container
  starts only once the restore has an outcome. The stale container on the old node is
  an orphan (no row owns its id) and is removed when that node reports again.
- A container on a node whose replica is assigned elsewhere, or that no replica owns,
  is removed: never two copies of one replica running for long.
- Voluntary disruptions (rolling update to a new generation) happen one at a time per
  deployment, and only while every other replica is ready, so each replacement is
  healthy before the next starts. Slots on a draining node stay until the drain moves
  them with their data, one at a time (controlplane/volumes/drain.py).
- A crashed replica restarts under its restart policy after a growing, capped delay.
- A slot that is being moved to another live node with its data (a transfer,
  `transfer_until` in the future) is left alone, its containers included: the mover
  stops, starts and removes them itself (controlplane/volumes/moves.py).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable

from controlplane.reconciler.model import (
    Action,
    AddReplica,
    BackoffPolicy,
    CreateServer,
    DesiredDeployment,
    DesiredReplica,
    ForgetReplica,
    NodeView,
    ObservedServer,
    RecordCrash,
    RecreateServer,
    RemoveServer,
    RestoreData,
    StartServer,
    StopServer,
    Unschedulable,
    WaitForNode,
    World,
)
from controlplane.scheduler import (
    Claim,
    PlacementIndex,
    PlacementRequest,
    Snapshot,
    snapshot_of,
)

IdFactory = Callable[[], str]


def decide(
    world: World,
    now: float,
    new_id: IdFactory,
    backoff: BackoffPolicy | None = None,
) -> list[Action]:
    """Every action that brings the observed world closer to the desired one."""
    policy = backoff or BackoffPolicy()
    index = PlacementIndex(_snapshot(world))
    by_deployment: dict[str, list[DesiredReplica]] = defaultdict(list)
    for replica in world.replicas:
        by_deployment[replica.deployment_id].append(replica)
    actions: list[Action] = _orphans(world, now)
    for deployment in world.deployments.values():
        pass_ = _DeploymentPass(world, deployment, index, now, policy, new_id)
        actions.extend(pass_.run(by_deployment.get(deployment.id, [])))
    return actions


def replica_claims(world: World) -> list[Claim]:
    """The room the world's placed replicas hold (their deployment's resources)."""
    claims: list[Claim] = []
    for replica in world.replicas:
        deployment = world.deployments.get(replica.deployment_id)
        if replica.node_id is None or deployment is None:
            continue
        claims.append(
            Claim(
                node_id=replica.node_id,
                cpu_millis=deployment.cpu_millis,
                memory_bytes=deployment.memory_bytes,
                host_ports=replica.host_ports,
                group=deployment.id,
                disk_bytes=deployment.disk_bytes,
            )
        )
    return claims


def _snapshot(world: World) -> Snapshot:
    nodes = [view.for_placement() for view in world.nodes.values()]
    return snapshot_of(nodes, [*replica_claims(world), *world.claims])


def _moving(replica: DesiredReplica, now: float) -> bool:
    return replica.transfer_until is not None and now < replica.transfer_until


def _orphans(world: World, now: float) -> list[Action]:
    owner = {replica.id: replica for replica in world.replicas}
    actions: list[Action] = []
    for node_id, view in world.nodes.items():
        for server_id in view.servers or {}:
            replica = owner.get(server_id)
            if replica is not None and _moving(replica, now):
                continue  # the mover's, on the source and the target
            if (
                replica is None
                or replica.node_id != node_id
                or replica.deployment_id not in world.deployments
            ):
                actions.append(RemoveServer(node_id=node_id, replica_id=server_id))
    return actions


class _DeploymentPass:
    """The decisions for one deployment within one pass."""

    def __init__(
        self,
        world: World,
        deployment: DesiredDeployment,
        index: PlacementIndex,
        now: float,
        backoff: BackoffPolicy,
        new_id: IdFactory,
    ) -> None:
        self.new_id = new_id
        self.world = world
        self.deployment = deployment
        self.index = index
        self.now = now
        self.backoff = backoff
        self.disruption_allowed = False
        self.actions: list[Action] = []

    def run(self, replicas: list[DesiredReplica]) -> list[Action]:
        d = self.deployment
        slots: dict[int, DesiredReplica] = {}
        for replica in sorted(replicas, key=lambda r: (r.ordinal, r.id)):
            if replica.ordinal >= d.replicas:
                self._forget(replica, released=replica.volume_id or replica.id)
            elif replica.ordinal in slots:
                self._forget(replica)
            else:
                slots[replica.ordinal] = replica
        self.disruption_allowed = len(slots) == d.replicas and all(
            self._observed_ready(r) for r in slots.values()
        )
        for ordinal in range(d.replicas):
            slot = slots.get(ordinal)
            if slot is not None and _moving(slot, self.now):
                self.disruption_allowed = False
            elif slot is not None:
                self._replica(slot)
            elif d.running:
                self._add(ordinal)
        return self.actions

    # ---- helpers ---------------------------------------------------------

    def _view(self, replica: DesiredReplica) -> NodeView | None:
        return None if replica.node_id is None else self.world.nodes.get(replica.node_id)

    def _observed(self, replica: DesiredReplica) -> ObservedServer | None:
        view = self._view(replica)
        if view is None or view.servers is None:
            return None
        return view.servers.get(replica.id)

    def _observed_ready(self, replica: DesiredReplica) -> bool:
        observed = self._observed(replica)
        return observed is not None and observed.ready

    def _take_disruption(self) -> bool:
        allowed, self.disruption_allowed = self.disruption_allowed, False
        return allowed

    def _place(self, avoid: str | None) -> tuple[str, tuple[int, ...]] | None:
        d = self.deployment
        request = PlacementRequest(
            replica_ids=["slot"],
            cpu_millis=d.cpu_millis,
            memory_bytes=d.memory_bytes,
            port_count=d.port_count,
            disk_bytes=d.disk_bytes,
            constraints=d.constraints,
            strategy=d.strategy,
            group=d.id,
            avoid_nodes=frozenset({avoid}) if avoid else frozenset(),
        )
        result = self.index.place(request)
        if not result.placements:
            return None
        placement = result.placements[0]
        return placement.node_id, placement.host_ports

    # ---- slot decisions --------------------------------------------------

    def _forget(self, replica: DesiredReplica, released: str = "") -> None:
        self.actions.append(ForgetReplica(replica.id, released))
        if self._observed(replica) is not None and replica.node_id is not None:
            self.actions.append(RemoveServer(node_id=replica.node_id, replica_id=replica.id))

    def _add(self, ordinal: int) -> None:
        replica_id = self.new_id()
        where = self._place(avoid=None)
        if where is None:
            self.actions.append(Unschedulable(self.deployment.id, ordinal, "no_feasible_node"))
            return
        node_id, ports = where
        # A new slot's volume takes the id of its first replica.
        self.actions.append(
            AddReplica(replica_id, self.deployment.id, ordinal, node_id, ports, replica_id)
        )
        self.actions.append(CreateServer(node_id, replica_id, self.deployment.id, start=True))

    def _move(
        self, replica: DesiredReplica, *, remove_old: bool = False, restore: bool = False
    ) -> bool:
        # The slot moves under a new replica id: the old container keeps its id on the
        # old node (where it is an orphan from now on), and the two never share a name.
        where = self._place(avoid=replica.node_id)
        if where is None:
            return False
        node_id, ports = where
        if remove_old and replica.node_id is not None:
            self.actions.append(RemoveServer(replica.node_id, replica.id))
        moved = self.new_id()
        volume = replica.volume_id or replica.id
        self.actions.append(ForgetReplica(replica.id))
        self.actions.append(
            AddReplica(moved, self.deployment.id, replica.ordinal, node_id, ports, volume, restore)
        )
        # With data to restore it is created stopped: the restore comes first.
        self.actions.append(CreateServer(node_id, moved, self.deployment.id, not restore))
        return True

    def _replica(self, replica: DesiredReplica) -> None:
        d = self.deployment
        view = self._view(replica)
        if view is None or view.status == "down":
            if view is not None and replica.node_id is not None and self._waits(view):
                move_at = self._move_at(view)
                self.actions.append(WaitForNode(d.id, replica.ordinal, replica.node_id, move_at))
            elif d.running and not self._move(replica, restore=True):
                self.actions.append(Unschedulable(d.id, replica.ordinal, "no_feasible_node"))
            return
        if view.servers is None:
            return  # the node has not reported yet: nothing is known
        observed = view.servers.get(replica.id)
        if observed is None:
            if d.running:
                start = not replica.awaiting_data
                self.actions.append(CreateServer(view.capacity.id, replica.id, d.id, start))
            return
        if replica.awaiting_data:
            # Stopped until its backup is back; nothing else touches it meanwhile.
            if not observed.pulling:
                self.actions.append(RestoreData(view.capacity.id, replica.id))
            return
        # On a draining node it keeps running until the drain moves it away with its
        # data (controlplane/volumes/drain.py): never a move that leaves the data behind.
        self._container(replica, view.capacity.id, observed)

    def _move_at(self, view: NodeView) -> float | None:
        after, since = self.deployment.move_after, view.down_since
        return None if after is None or since is None else since + after

    def _waits(self, view: NodeView) -> bool:
        """The slot waits for its down node (`wait`, and `move_after` not yet over)."""
        if self.deployment.on_node_loss != "wait":
            return False
        move_at = self._move_at(view)
        return move_at is None or self.now < move_at

    def _container(self, replica: DesiredReplica, node_id: str, observed: ObservedServer) -> None:
        d = self.deployment
        if not d.running:
            if observed.state in ("running", "starting"):
                self.actions.append(StopServer(node_id, replica.id))
            return
        if observed.pulling:
            return  # the agent creates or replaces it once the image is there
        if observed.generation < d.generation:
            if not observed.ready or self._take_disruption():
                self.actions.append(RecreateServer(node_id, replica.id, d.id))
            return
        if observed.state == "offline":
            self._offline(replica, node_id, observed)
        elif replica.start_issued_at is not None or (
            replica.crash_streak and self._stable(observed)
        ):
            streak = 0 if self._stable(observed) else replica.crash_streak
            self.actions.append(
                dataclasses.replace(
                    _bookkeeping(replica), crash_streak=streak, start_issued_at=None
                )
            )

    def _stable(self, observed: ObservedServer) -> bool:
        up_since = observed.started_at_ms / 1000
        return observed.state == "running" and self.now - up_since >= self.backoff.reset_after

    def _offline(self, replica: DesiredReplica, node_id: str, observed: ObservedServer) -> None:
        d = self.deployment
        stopped_before_start = observed.finished_at_ms / 1000 < d.run_since
        if not observed.exited or stopped_before_start:
            if replica.start_issued_at is None or self._retry_due(replica):
                self.actions.append(StartServer(node_id, replica.id))
                self.actions.append(
                    dataclasses.replace(_bookkeeping(replica), start_issued_at=self.now)
                )
            return
        if d.restart_policy == "never" or (
            d.restart_policy == "on-failure" and observed.exit_code == 0
        ):
            return
        if observed.finished_at_ms != replica.handled_exit_ms:
            self._count_crash(replica, observed)
        elif replica.backoff_until is not None and self.now >= replica.backoff_until:
            self.actions.append(StartServer(node_id, replica.id))
            self.actions.append(
                dataclasses.replace(
                    _bookkeeping(replica), backoff_until=None, start_issued_at=self.now
                )
            )
        elif replica.backoff_until is None and self._retry_due(replica):
            self.actions.append(StartServer(node_id, replica.id))
            self.actions.append(
                dataclasses.replace(_bookkeeping(replica), start_issued_at=self.now)
            )

    def _retry_due(self, replica: DesiredReplica) -> bool:
        issued = replica.start_issued_at
        return issued is None or self.now - issued >= self.backoff.restart_retry

    def _count_crash(self, replica: DesiredReplica, observed: ObservedServer) -> None:
        ran_for = (observed.finished_at_ms - observed.started_at_ms) / 1000
        streak = 1 if ran_for >= self.backoff.reset_after else replica.crash_streak + 1
        self.actions.append(
            RecordCrash(
                replica_id=replica.id,
                restart_count=replica.restart_count + 1,
                crash_streak=streak,
                handled_exit_ms=observed.finished_at_ms,
                backoff_until=self.now + self.backoff.delay(streak),
                start_issued_at=None,
            )
        )


def _bookkeeping(replica: DesiredReplica) -> RecordCrash:
    return RecordCrash(
        replica_id=replica.id,
        restart_count=replica.restart_count,
        crash_streak=replica.crash_streak,
        handled_exit_ms=replica.handled_exit_ms,
        backoff_until=replica.backoff_until,
        start_issued_at=replica.start_issued_at,
    )
