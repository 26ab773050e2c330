"""Placement rules of the pure planner, and agreement with the brute-force reference."""

from __future__ import annotations

import random

import pytest

from controlplane.scheduler import (
    NO_FEASIBLE_NODE,
    BruteForceIndex,
    NodeCapacity,
    Placement,
    PlacementIndex,
    PlacementRequest,
    Snapshot,
    plan,
    plan_brute_force,
)

MI = 2**20


def node(node_id: str, cpu: int = 2000, mem_mi: int = 1024, **kw: object) -> NodeCapacity:
    return NodeCapacity(
        id=node_id,
        cpu_millis=cpu,
        memory_bytes=mem_mi * MI,
        port_range=kw.pop("port_range", (30000, 30009)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def request(n: int = 1, cpu: int = 100, mem_mi: int = 128, **kw: object) -> PlacementRequest:
    ids = [f"r{i}" for i in range(n)]
    return PlacementRequest(replica_ids=ids, cpu_millis=cpu, memory_bytes=mem_mi * MI, **kw)  # type: ignore[arg-type]


def test_binpack_fills_the_tightest_node_first() -> None:
    snapshot = Snapshot(nodes=[node("big", mem_mi=4096), node("small", mem_mi=512)])
    result = plan(snapshot, request(n=5))
    assert [p.node_id for p in result.placements] == ["small"] * 4 + ["big"]
    assert result.complete


def test_spread_balances_replicas_of_one_group() -> None:
    snapshot = Snapshot(nodes=[node("a"), node("b"), node("c")], group_counts={"d1": {"a": 1}})
    result = plan(snapshot, request(n=3, strategy="spread", group="d1"))
    nodes = [p.node_id for p in result.placements]
    assert sorted(nodes[:2]) == ["b", "c"]
    assert nodes.count("a") == 1


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (node("n", ready=False), "not ready"),
        (node("n", draining=True), "draining"),
        (node("n", cpu=50), "cpu"),
        (node("n", mem_mi=64), "memory"),
        (node("n", cpu_reserved=1950), "reserved cpu"),
        (node("n", memory_reserved=1000 * MI), "reserved memory"),
        (node("n", port_range=(30000, 30000), used_ports=frozenset({30000})), "ports"),
    ],
)
def test_infeasible_nodes_are_skipped(candidate: NodeCapacity, reason: str) -> None:
    result = plan(Snapshot(nodes=[candidate]), request(port_count=1))
    assert result.unplaced == {"r0": NO_FEASIBLE_NODE}, reason


def test_label_constraints_select_nodes() -> None:
    snapshot = Snapshot(nodes=[node("eu", labels={"region": "eu"}), node("us", labels={})])
    result = plan(snapshot, request(n=2, constraints={"region": "eu"}))
    assert {p.node_id for p in result.placements} == {"eu"}


def test_ports_come_from_the_range_and_skip_used_ones() -> None:
    snapshot = Snapshot(nodes=[node("a", used_ports=frozenset({30000, 30002}))])
    result = plan(snapshot, request(n=2, port_count=2))
    assert [p.host_ports for p in result.placements] == [(30001, 30003), (30004, 30005)]


def test_avoid_nodes_moves_work_elsewhere() -> None:
    snapshot = Snapshot(nodes=[node("a", mem_mi=256), node("b")])
    result = plan(snapshot, request(avoid_nodes=frozenset({"a"})))
    assert result.placements[0].node_id == "b"


def test_partial_plan_reports_what_did_not_fit() -> None:
    result = plan(Snapshot(nodes=[node("a", mem_mi=256)]), request(n=3))
    assert len(result.placements) == 2
    assert result.unplaced == {"r2": NO_FEASIBLE_NODE}


def test_index_keeps_reservations_across_requests() -> None:
    index = PlacementIndex(Snapshot(nodes=[node("a", mem_mi=256)]))
    assert index.place(request(n=2)).complete
    assert not index.place(request(n=1)).complete


@pytest.mark.parametrize("strategy", ["binpack", "spread"])
def test_index_agrees_with_brute_force(strategy: str) -> None:
    rng = random.Random(7)
    nodes = [
        node(
            f"n{i:03d}",
            cpu=rng.choice([1000, 2000, 4000]),
            mem_mi=rng.choice([512, 1024, 2048]),
            labels={"zone": rng.choice("ab")},
            draining=rng.random() < 0.1,
        )
        for i in range(60)
    ]
    snapshot = Snapshot(nodes=nodes)
    index = PlacementIndex(snapshot)
    requests = [
        request(
            n=rng.randint(1, 4),
            cpu=rng.choice([100, 250, 500]),
            mem_mi=rng.choice([64, 128, 256]),
            port_count=rng.randint(0, 2),
            constraints={"zone": "a"} if rng.random() < 0.3 else {},
            strategy=strategy,
            group=f"d{k}",
        )
        for k in range(40)
    ]
    fast = [p for r in requests for p in index.place(r).placements]
    # The reference must see the same evolving state: replay every request on it.
    reference = _ReferenceReplay(snapshot)
    slow = [p for r in requests for p in reference.place(r)]
    assert fast == slow
    assert len(fast) > 40


@pytest.mark.parametrize("seed", range(6))
def test_index_agrees_with_brute_force_until_the_cluster_is_full(seed: int) -> None:
    """Hundreds of nodes (many blocks of the memory order), requests until nothing
    fits: CPU, memory, disk and ports each run out first on some nodes, some requests
    avoid nodes or need labels, and both strategies mix."""
    rng = random.Random(seed)
    nodes = [
        node(
            f"n{i:04d}",
            cpu=rng.choice([500, 1000, 4000]),
            mem_mi=rng.choice([256, 1024, 4096]),
            disk_bytes=rng.choice([0, 1 << 30, 8 << 30]),
            port_range=(30000, 30000 + rng.randint(0, 6)),
            labels={"zone": rng.choice("ab")},
            draining=rng.random() < 0.05,
        )
        for i in range(rng.randint(150, 400))
    ]
    snapshot = Snapshot(nodes=nodes)
    fast, slow = PlacementIndex(snapshot), BruteForceIndex(snapshot)
    placed = 0
    for k in range(700):
        r = PlacementRequest(
            replica_ids=[f"d{k}r{i}" for i in range(rng.randint(1, 5))],
            cpu_millis=rng.choice([0, 50, 250, 700]),
            memory_bytes=rng.choice([16, 128, 512, 2048]) * MI,
            disk_bytes=rng.choice([0, 0, 256 << 20, 2 << 30]),
            port_count=rng.randint(0, 3),
            constraints={"zone": "a"} if rng.random() < 0.2 else {},
            strategy=rng.choice(["binpack", "binpack", "spread"]),
            group=f"d{k % 50}",
            avoid_nodes=frozenset(rng.sample([n.id for n in nodes], 3)),
        )
        answer = fast.place(r)
        assert answer == slow.place(r), k
        placed += len(answer.placements)
    assert placed > 500


class _ReferenceReplay:
    """Brute force across several requests: re-plan on a snapshot updated by hand."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def place(self, r: PlacementRequest) -> list[Placement]:
        result = plan_brute_force(self.snapshot, r)
        by_node: dict[str, list[Placement]] = {}
        for p in result.placements:
            by_node.setdefault(p.node_id, []).append(p)
        nodes = []
        counts = {g: dict(c) for g, c in self.snapshot.group_counts.items()}
        for n in self.snapshot.nodes:
            mine = by_node.get(n.id, [])
            if mine:
                ports = {port for p in mine for port in p.host_ports}
                n = NodeCapacity(
                    id=n.id,
                    cpu_millis=n.cpu_millis,
                    memory_bytes=n.memory_bytes,
                    port_range=n.port_range,
                    cpu_reserved=n.cpu_reserved + r.cpu_millis * len(mine),
                    memory_reserved=n.memory_reserved + r.memory_bytes * len(mine),
                    used_ports=n.used_ports | ports,
                    labels=n.labels,
                    ready=n.ready,
                    draining=n.draining,
                )
                group = counts.setdefault(r.group, {})
                group[n.id] = group.get(n.id, 0) + len(mine)
            nodes.append(n)
        self.snapshot = Snapshot(nodes=nodes, group_counts=counts)
        return list(result.placements)
