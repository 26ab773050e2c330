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
