"""The reconciler's pure decisions: scale, reschedule, orphans, crashes, rolling update."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TypeVar

from controlplane.reconciler import (
    BackoffPolicy,
    DesiredDeployment,
    DesiredReplica,
    NodeView,
    ObservedServer,
    World,
    decide,
)
from controlplane.reconciler.model import (
    Action,
    AddReplica,
    CreateServer,
    ForgetReplica,
    RecordCrash,
    RecreateServer,
    RemoveServer,
    RestoreData,
    StartServer,
    StopServer,
    Unschedulable,
    WaitForNode,
)
from controlplane.scheduler import NodeCapacity

MI = 2**20
ActionT = TypeVar("ActionT")
NOW = 1_000_000.0


def deployment(replicas: int = 2, **kw: object) -> DesiredDeployment:
    base: dict[str, object] = {
        "id": "d1",
        "replicas": replicas,
        "running": True,
        "generation": 1,
        "cpu_millis": 100,
        "memory_bytes": 64 * MI,
    }
    base.update(kw)
    return DesiredDeployment(**base)  # type: ignore[arg-type]


def node(
    node_id: str, servers: Mapping[str, ObservedServer] | None = None, status: str = "ready"
) -> NodeView:
    capacity = NodeCapacity(
        id=node_id, cpu_millis=2000, memory_bytes=1024 * MI, port_range=(30000, 30100)
    )
    return NodeView(capacity=capacity, status=status, servers=servers)  # type: ignore[arg-type]


def running(rid: str, generation: int = 1, **kw: object) -> ObservedServer:
    base: dict[str, object] = {
        "id": rid,
        "state": "running",
        "generation": generation,
        "started_at_ms": int((NOW - 5) * 1000),
    }
    base.update(kw)
    return ObservedServer(**base)  # type: ignore[arg-type]


def crashed(rid: str, finished_ms: int, exit_code: int = 1) -> ObservedServer:
    return ObservedServer(
        id=rid,
        state="offline",
        generation=1,
        exited=True,
        exit_code=exit_code,
        started_at_ms=finished_ms - 500,
        finished_at_ms=finished_ms,
    )


def replica(rid: str, ordinal: int, node_id: str | None, **kw: object) -> DesiredReplica:
    return DesiredReplica(id=rid, deployment_id="d1", ordinal=ordinal, node_id=node_id, **kw)  # type: ignore[arg-type]


def world(
    replicas: Iterable[DesiredReplica], nodes: Iterable[NodeView], *deps: DesiredDeployment
) -> World:
    deps = deps or (deployment(),)
    return World(
        deployments={d.id: d for d in deps},
        replicas=list(replicas),
        nodes={n.capacity.id: n for n in nodes},
    )


def run(w: World, now: float = NOW) -> list[Action]:
    counter = itertools.count()
    return decide(w, now, lambda: f"new{next(counter)}")


def of(actions: list[Action], kind: type[ActionT]) -> list[ActionT]:
    return [a for a in actions if isinstance(a, kind)]


def test_missing_replicas_are_placed_and_spread() -> None:
    actions = run(world([], [node("a", {}), node("b", {})]))
    added = of(actions, AddReplica)
    assert {a.node_id for a in added} == {"a", "b"}
    assert len(of(actions, CreateServer)) == 2
    assert all(a.volume_id == a.replica_id for a in added)  # a new slot's volume


def test_converged_world_needs_nothing() -> None:
    w = world(
        [replica("r0", 0, "a"), replica("r1", 1, "b")],
        [node("a", {"r0": running("r0")}), node("b", {"r1": running("r1")})],
    )
    assert run(w) == []


def test_scale_down_forgets_extra_slots_and_removes_their_containers() -> None:
    w = world(
        [replica("r0", 0, "a"), replica("r1", 1, "a")],
        [node("a", {"r0": running("r0"), "r1": running("r1")})],
        deployment(replicas=1),
    )
    # The slot's volume is released: its data is kept for the grace period.
    assert run(w) == [ForgetReplica("r1", "r1"), RemoveServer("a", "r1")]


def test_replicas_of_a_down_node_move_to_a_live_one() -> None:
    """The slot keeps its volume (data directory, SFTP login) under its new replica."""
    w = world(
        [replica("r0", 0, "a", volume_id="v0"), replica("r1", 1, "b")],
        [node("a", None, status="down"), node("b", {"r1": running("r1")})],
    )
    actions = run(w)
    assert actions == [
        ForgetReplica("r0"),
        AddReplica("new0", "d1", 0, "b", (), "v0", restore=True),  # its data was lost
        CreateServer("b", "new0", "d1", False),  # stopped: its backup comes back first
    ]


def test_a_slot_awaiting_its_data_is_restored_before_anything_starts_it() -> None:
    waiting = replica("r0", 0, "b", awaiting_data=True)
    missing = world([waiting], [node("b", {})], deployment(replicas=1))
    assert run(missing) == [CreateServer("b", "r0", "d1", False)]
    created = ObservedServer(id="r0", state="offline", generation=1)
    stopped = world([waiting], [node("b", {"r0": created})], deployment(replicas=1))
    assert run(stopped) == [RestoreData("b", "r0")]  # never StartServer meanwhile
    pulling = replace(created, pulling=True)
    assert run(world([waiting], [node("b", {"r0": pulling})], deployment(replicas=1))) == []
    done = replica("r0", 0, "b")
    after = run(world([done], [node("b", {"r0": created})], deployment(replicas=1)))
    assert StartServer("b", "r0") in after


def test_a_slot_that_waits_for_its_lost_node_stays_until_move_after() -> None:
    lost = replace(node("a", None, status="down"), down_since=NOW - 50)
    slots = [replica("r0", 0, "a", volume_id="v0"), replica("r1", 1, "b")]
    nodes = [lost, node("b", {"r1": running("r1")})]
    forever = world(slots, nodes, deployment(on_node_loss="wait"))
    assert run(forever) == [WaitForNode("d1", 0, "a", None)]
    for_a_while = world(slots, nodes, deployment(on_node_loss="wait", move_after=60.0))
    assert run(for_a_while) == [WaitForNode("d1", 0, "a", NOW + 10)]
    moved = run(for_a_while, now=NOW + 10)
    assert of(moved, AddReplica) == [AddReplica("new0", "d1", 0, "b", (), "v0", restore=True)]
    # A node that is gone (deleted) is not waited for.
    gone = world([slots[0]], nodes[1:], deployment(replicas=1, on_node_loss="wait"))
    assert of(run(gone), AddReplica) == [AddReplica("new0", "d1", 0, "b", (), "v0", restore=True)]


def test_stale_copy_on_a_returning_node_is_removed() -> None:
    w = world(
        [replica("r0", 0, "b"), replica("r1", 1, "b")],
        [node("a", {"r0": running("r0")}), node("b", {"r0": running("r0"), "r1": running("r1")})],
    )
    assert run(w) == [RemoveServer("a", "r0")]


def test_unknown_containers_are_orphans() -> None:
    w = world([], [node("a", {"ghost": running("ghost")})], deployment(replicas=0))
    assert run(w) == [RemoveServer("a", "ghost")]


def test_nodes_that_never_reported_are_left_alone() -> None:
    w = world([replica("r0", 0, "a")], [node("a", None)], deployment(replicas=1))
    assert run(w) == []


def test_stopped_deployment_stops_running_containers() -> None:
    w = world(
        [replica("r0", 0, "a")], [node("a", {"r0": running("r0")})], deployment(1, running=False)
    )
    assert run(w) == [StopServer("a", "r0")]


def test_start_after_stop_is_not_a_crash() -> None:
    finished = int((NOW - 10) * 1000)
    w = world(
        [replica("r0", 0, "a")],
        [node("a", {"r0": crashed("r0", finished, exit_code=143)})],
        deployment(1, run_since=NOW - 1),
    )
    actions = run(w)
    assert StartServer("a", "r0") in actions
    assert not [a for a in of(actions, RecordCrash) if a.restart_count]


def test_crash_loop_backs_off_with_growing_capped_delay() -> None:
    policy = BackoffPolicy(base=1, cap=8)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    finished = int((NOW - 1) * 1000)
    r = replica("r0", 0, "a", restart_count=2, crash_streak=2)
    w = world([r], [node("a", {"r0": crashed("r0", finished)})], deployment(1))
    actions = run(w)
    assert actions == [
        RecordCrash("r0", 3, 3, finished, NOW + 4.0, None)
    ]  # counted once, not started yet
    waiting = dataclasses.replace(
        r, restart_count=3, crash_streak=3, handled_exit_ms=finished, backoff_until=NOW + 4.0
    )
    w2 = world([waiting], w.nodes.values(), deployment(1))
    assert run(w2, NOW + 1) == []
    later = run(w2, NOW + 4)
    assert StartServer("a", "r0") in later


def test_restart_policy_never_and_on_failure() -> None:
    finished = int((NOW - 1) * 1000)
    for policy, code in (("never", 1), ("on-failure", 0)):
        w = world(
            [replica("r0", 0, "a")],
            [node("a", {"r0": crashed("r0", finished, exit_code=code)})],
            deployment(1, restart_policy=policy),
        )
        assert run(w) == [], policy


def test_rolling_update_replaces_one_ready_replica_at_a_time() -> None:
    servers = {"r0": running("r0"), "r1": running("r1")}
    w = world(
        [replica("r0", 0, "a"), replica("r1", 1, "a")],
        [node("a", servers)],
        deployment(2, generation=2),
    )
    assert run(w) == [RecreateServer("a", "r0", "d1")]
    # r0 replaced but not yet healthy: r1 must wait.
    servers2 = {"r0": running("r0", 2, health="starting"), "r1": running("r1")}
    w2 = world(w.replicas, [node("a", servers2)], deployment(2, generation=2))
    assert run(w2) == []
    servers3 = {"r0": running("r0", 2, health="healthy"), "r1": running("r1")}
    w3 = world(w.replicas, [node("a", servers3)], deployment(2, generation=2))
    assert run(w3) == [RecreateServer("a", "r1", "d1")]


def test_slots_on_a_draining_node_are_left_to_the_drain() -> None:
    """The drain moves them with their data (controlplane/volumes/drain.py); the
    reconciler never moves them without it."""
    w = world(
        [replica("r0", 0, "a"), replica("r1", 1, "a")],
        [node("a", {"r0": running("r0"), "r1": running("r1")}, status="draining"), node("b", {})],
    )
    assert run(w) == []


def test_a_moving_slot_is_left_alone_until_its_mark_runs_out() -> None:
    """Its containers too: the mover stops, starts and removes them itself."""
    moving = replica("r0", 0, "a", transfer_until=NOW + 30)
    w = world(
        [moving],
        [
            node("a", {"r0": running("r0", state="offline", exited=True)}),
            node("b", {"r0": running("r0")}),
        ],
        deployment(1),
    )
    assert run(w) == []
    assert of(run(w, now=NOW + 31), RemoveServer) == [RemoveServer("b", "r0")]


def test_unschedulable_slots_are_reported() -> None:
    actions = run(world([], [node("a", {})], deployment(1, memory_bytes=4096 * MI)))
    assert actions == [Unschedulable("d1", 0, "no_feasible_node")]


def test_decisions_are_repeatable() -> None:
    w = world([replica("r0", 0, "a")], [node("a", {}), node("b", {})], deployment(3))
    assert run(w) == run(w)


def test_draining_without_another_node_keeps_the_replica_running() -> None:
    w = world(
        [replica("r0", 0, "a")],
        [node("a", {"r0": running("r0")}, status="draining")],
        deployment(1),
    )
    assert run(w) == []
