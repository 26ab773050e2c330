"""Claims, the snapshot built from them, and the re-check at the commit point. Pure."""

from __future__ import annotations

from dataclasses import replace

from controlplane.scheduler import Claim, NodeCapacity, PlacementRequest, admit, plan, snapshot_of
from controlplane.scheduler.capacity import NO_ROOM, NODE_GONE, NODE_UNSCHEDULABLE, PORT_TAKEN

MI = 2**20
NODE = NodeCapacity(id="n1", cpu_millis=1000, memory_bytes=256 * MI, port_range=(30000, 30002))


def test_claims_of_replicas_and_tasks_reserve_the_same_room() -> None:
    snapshot = snapshot_of(
        [NODE],
        [Claim("n1", 300, 128 * MI, (30000,), group="d1"), Claim("n1", 200, 64 * MI)],
    )
    (node,) = snapshot.nodes
    assert (node.cpu_reserved, node.memory_reserved) == (500, 192 * MI)
    assert node.used_ports == frozenset({30000})
    assert snapshot.group_counts == {"d1": {"n1": 1}}
    request = PlacementRequest(["t"], cpu_millis=100, memory_bytes=128 * MI)
    assert not plan(snapshot, request).placements  # 64Mi left


def test_admit_checks_each_proposal_after_the_ones_before_it() -> None:
    snapshot = snapshot_of([NODE], [Claim("n1", 0, 128 * MI)])
    verdicts = admit(snapshot, [Claim("n1", 100, 128 * MI), Claim("n1", 100, 1)])
    assert verdicts == [None, NO_ROOM]


def test_admit_refuses_taken_ports_gone_and_unschedulable_nodes() -> None:
    draining = replace(NODE, id="n2", draining=True)
    snapshot = snapshot_of([NODE, draining], [Claim("n1", 0, 0, (30001,))])
    verdicts = admit(
        snapshot,
        [
            Claim("n1", 1, 1, (30001,)),
            Claim("n1", 1, 1, (40000,)),
            Claim("n9", 1, 1),
            Claim("n2", 1, 1),
            Claim("n1", 1, 1, (30002,)),
            Claim("n1", 1, 1, (30002,)),
        ],
    )
    assert verdicts == [PORT_TAKEN, PORT_TAKEN, NODE_GONE, NODE_UNSCHEDULABLE, None, PORT_TAKEN]


def test_disk_limits_are_placed_only_while_their_sum_fits_the_node() -> None:
    roomy = replace(NODE, disk_bytes=1024 * MI)
    snapshot = snapshot_of([roomy], [Claim("n1", 0, 0, disk_bytes=600 * MI)])
    (node,) = snapshot.nodes
    assert node.disk_reserved == 600 * MI
    fits = PlacementRequest(["a"], cpu_millis=0, memory_bytes=0, disk_bytes=424 * MI)
    too_big = PlacementRequest(["b"], cpu_millis=0, memory_bytes=0, disk_bytes=425 * MI)
    assert plan(snapshot, fits).placements
    assert not plan(snapshot, too_big).placements  # no overcommit
    verdicts = admit(
        snapshot, [Claim("n1", 0, 0, disk_bytes=400 * MI), Claim("n1", 0, 0, disk_bytes=25 * MI)]
    )
    assert verdicts == [None, NO_ROOM]


def test_a_node_that_reports_no_disk_takes_only_work_without_a_disk_limit() -> None:
    snapshot = snapshot_of([NODE], [])
    limited = PlacementRequest(["a"], cpu_millis=0, memory_bytes=0, disk_bytes=16 * MI)
    assert not plan(snapshot, limited).placements
    assert plan(snapshot, PlacementRequest(["b"], cpu_millis=0, memory_bytes=0)).placements
    assert admit(snapshot, [Claim("n1", 0, 0, disk_bytes=16 * MI)]) == [NO_ROOM]
