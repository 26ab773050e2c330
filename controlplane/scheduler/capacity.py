"""What placed work holds on the nodes, and the check a commit makes. Pure.

Every placement — a deployment's replica or a task — holds a :class:`Claim` on its
node. :func:`snapshot_of` folds the claims into the :class:`Snapshot` that proposals
are planned on; :func:`admit` is the re-check at the commit point: each proposed
claim, in order, must still fit next to everything committed before it (and the
proposals admitted before it), otherwise it is refused with a reason. New kinds of
room extend :class:`Claim` and :class:`NodeCapacity` together, and both functions
with them (as disk did).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from controlplane.scheduler.model import NodeCapacity, Snapshot

NODE_GONE = "node_gone"
NODE_UNSCHEDULABLE = "node_unschedulable"
NO_ROOM = "no_room"
PORT_TAKEN = "port_taken"


@dataclass(frozen=True, slots=True)
class Claim:
    """Room held on `node_id`: CPU, memory, host ports and the disk limit of a volume
    (0: none); `group` is the deployment of a replica (spread balances it), empty for
    a task."""

    node_id: str
    cpu_millis: int
    memory_bytes: int
    host_ports: tuple[int, ...] = ()
    group: str = ""
    disk_bytes: int = 0


def snapshot_of(nodes: Iterable[NodeCapacity], claims: Iterable[Claim]) -> Snapshot:
    """The nodes with every claim on them reserved (on top of what each node already
    reserves), and the replicas of each group per node."""
    cpu: dict[str, int] = defaultdict(int)
    memory: dict[str, int] = defaultdict(int)
    disk: dict[str, int] = defaultdict(int)
    ports: dict[str, set[int]] = defaultdict(set)
    groups: dict[str, dict[str, int]] = defaultdict(dict)
    for claim in claims:
        cpu[claim.node_id] += claim.cpu_millis
        memory[claim.node_id] += claim.memory_bytes
        disk[claim.node_id] += claim.disk_bytes
        ports[claim.node_id].update(claim.host_ports)
        if claim.group:
            counts = groups[claim.group]
            counts[claim.node_id] = counts.get(claim.node_id, 0) + 1
    reserved = [
        replace(
            node,
            cpu_reserved=node.cpu_reserved + cpu[node.id],
            memory_reserved=node.memory_reserved + memory[node.id],
            disk_reserved=node.disk_reserved + disk[node.id],
            used_ports=node.used_ports | frozenset(ports[node.id]),
        )
        for node in nodes
    ]
    return Snapshot(nodes=reserved, group_counts=groups)


def admit(snapshot: Snapshot, proposed: Sequence[Claim]) -> list[str | None]:
    """For each proposed claim in order: None when it fits on its node next to the
    snapshot's claims and the proposals admitted before it, else why not."""
    free = {
        node.id: [
            node.cpu_millis - node.cpu_reserved,
            node.memory_bytes - node.memory_reserved,
            node.disk_bytes - node.disk_reserved,
        ]
        for node in snapshot.nodes
    }
    nodes = {node.id: node for node in snapshot.nodes}
    taken = {node.id: set(node.used_ports) for node in snapshot.nodes}
    verdicts: list[str | None] = []
    for claim in proposed:
        verdict = _refusal(claim, nodes.get(claim.node_id), free, taken)
        if verdict is None:
            free[claim.node_id][0] -= claim.cpu_millis
            free[claim.node_id][1] -= claim.memory_bytes
            free[claim.node_id][2] -= claim.disk_bytes
            taken[claim.node_id].update(claim.host_ports)
        verdicts.append(verdict)
    return verdicts


def _refusal(
    claim: Claim,
    node: NodeCapacity | None,
    free: dict[str, list[int]],
    taken: dict[str, set[int]],
) -> str | None:
    if node is None:
        return NODE_GONE
    if not node.schedulable:
        return NODE_UNSCHEDULABLE
    cpu, memory, disk = free[node.id]
    if claim.cpu_millis > cpu or claim.memory_bytes > memory:
        return NO_ROOM
    if claim.disk_bytes and claim.disk_bytes > disk:
        return NO_ROOM
    start, end = node.port_range
    ports = set(claim.host_ports)
    if len(ports) != len(claim.host_ports) or ports & taken[node.id]:
        return PORT_TAKEN
    if any(not start <= port <= end for port in ports):
        return PORT_TAKEN
    return None
