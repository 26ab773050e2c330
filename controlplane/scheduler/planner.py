"""Placement: which node runs each replica. Pure: no database, no network.

Feasible nodes are schedulable (ready, not draining), carry every constraint label,
and have enough unreserved CPU, memory and free host ports. Among them, ``binpack``
(the default) takes the node with the least free memory that still fits (best fit),
so whole nodes stay free for large requests; ``spread`` takes the node holding the
fewest replicas of the same group, then the one with the most free memory.

:class:`PlacementIndex` keeps nodes sorted by free memory, so a placement looks at a
handful of nodes instead of all of them, and stays valid across many requests (it is
updated in place as replicas land). :func:`plan_brute_force` scans every node for every
replica and gives the same answer; it exists as the reference for tests and benchmarks.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from controlplane.scheduler.model import (
    NodeCapacity,
    Placement,
    PlacementRequest,
    Plan,
    Snapshot,
)

NO_FEASIBLE_NODE = "no_feasible_node"


class PortPool:
    """Host ports of one node: hands out the lowest free ports of its range."""

    __slots__ = ("_cursor", "_end", "_free", "_used")

    def __init__(self, port_range: tuple[int, int], used: frozenset[int]) -> None:
        start, self._end = port_range
        self._used = {p for p in used if start <= p <= self._end}
        self._cursor = start
        self._free = max(0, self._end - start + 1 - len(self._used))

    @property
    def free(self) -> int:
        """How many ports of the range are still unbound."""
        return self._free

    def take(self, count: int) -> tuple[int, ...]:
        """Bind and return `count` ports; the caller checked :attr:`free` first."""
        ports: list[int] = []
        while len(ports) < count:
            port = self._cursor
            self._cursor += 1
            if port not in self._used:
                self._used.add(port)
                ports.append(port)
        self._free -= count
        return tuple(ports)


@dataclass(slots=True)
class _NodeState:
    node: NodeCapacity
    free_cpu: int
    free_memory: int
    ports: PortPool
    free_disk: int = 0
    groups: dict[str, int] = field(default_factory=dict)

    def fits(self, request: PlacementRequest) -> bool:
        return (
            self.free_cpu >= request.cpu_millis
            and self.free_memory >= request.memory_bytes
            and (not request.disk_bytes or self.free_disk >= request.disk_bytes)
            and self.ports.free >= request.port_count
            and self.node.id not in request.avoid_nodes
            and _labels_match(self.node.labels, request.constraints)
        )

    def take(self, request: PlacementRequest) -> tuple[int, ...]:
        self.free_cpu -= request.cpu_millis
        self.free_memory -= request.memory_bytes
        self.free_disk -= request.disk_bytes
        if request.group:
            self.groups[request.group] = self.groups.get(request.group, 0) + 1
        return self.ports.take(request.port_count)


def _labels_match(labels: Mapping[str, str], constraints: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in constraints.items())


def _states(snapshot: Snapshot) -> dict[str, _NodeState]:
    states: dict[str, _NodeState] = {}
    for node in snapshot.nodes:
        if not node.schedulable:
            continue
        states[node.id] = _NodeState(
            node=node,
            free_cpu=node.cpu_millis - node.cpu_reserved,
            free_memory=node.memory_bytes - node.memory_reserved,
            ports=PortPool(node.port_range, node.used_ports),
            free_disk=node.disk_bytes - node.disk_reserved,
        )
    for group, counts in snapshot.group_counts.items():
        for node_id, count in counts.items():
            if node_id in states:
                states[node_id].groups[group] = count
    return states


class PlacementIndex:
    """Schedulable nodes ordered by free memory; answers requests incrementally.

    Each :meth:`place` call commits its placements to the index, so consecutive
    requests see each other's reservations (a whole reconcile pass uses one index).
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._states = _states(snapshot)
        self._order: list[tuple[int, str]] = sorted(
            (state.free_memory, node_id) for node_id, state in self._states.items()
        )

    def place(self, request: PlacementRequest) -> Plan:
        """Place every replica of `request` or report why it could not be placed."""
        placements: list[Placement] = []
        unplaced: dict[str, str] = {}
        for replica_id in request.replica_ids:
            state = (
                self._pick_spread(request)
                if request.strategy == "spread"
                else self._pick_binpack(request)
            )
            if state is None:
                unplaced[replica_id] = NO_FEASIBLE_NODE
                continue
            self._commit(state, request, replica_id, placements)
        return Plan(placements=tuple(placements), unplaced=unplaced)

    def _commit(
        self,
        state: _NodeState,
        request: PlacementRequest,
        replica_id: str,
        placements: list[Placement],
    ) -> None:
        key = (state.free_memory, state.node.id)
        del self._order[bisect.bisect_left(self._order, key)]
        ports = state.take(request)
        bisect.insort(self._order, (state.free_memory, state.node.id))
        placements.append(Placement(replica_id, state.node.id, ports))

    def _pick_binpack(self, request: PlacementRequest) -> _NodeState | None:
        order = self._order
        for position in range(bisect.bisect_left(order, (request.memory_bytes, "")), len(order)):
            state = self._states[order[position][1]]
            if state.fits(request):
                return state
        return None

    def _pick_spread(self, request: PlacementRequest) -> _NodeState | None:
        best: _NodeState | None = None
        best_key: tuple[int, int] | None = None
        for _, node_id in reversed(self._order):
            state = self._states[node_id]
            if state.free_memory < request.memory_bytes:
                break  # the rest have even less free memory
            if not state.fits(request):
                continue
            key = (state.groups.get(request.group, 0), -state.free_memory)
            if best_key is None or key < best_key:
                best, best_key = state, key
            if key[0] == 0:
                break  # no later node can hold fewer replicas and more free memory
        return best

    def nodes(self) -> Iterator[str]:
        """Ids of the schedulable nodes, least free memory first."""
        return (node_id for _, node_id in self._order)


def plan(snapshot: Snapshot, request: PlacementRequest) -> Plan:
    """Place `request` on `snapshot` (see the module docstring for the rules)."""
    return PlacementIndex(snapshot).place(request)


def plan_brute_force(snapshot: Snapshot, request: PlacementRequest) -> Plan:
    """Reference placement: score every node for every replica. Same answers as
    :func:`plan`, in O(nodes) per replica."""
    return BruteForceIndex(snapshot).place(request)


class BruteForceIndex:
    """The reference for :class:`PlacementIndex`: same interface and answers, but it
    scores every node for every replica."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._states = _states(snapshot)

    def place(self, request: PlacementRequest) -> Plan:
        """Place every replica of `request` (committing, like :meth:`PlacementIndex.place`)."""
        placements: list[Placement] = []
        unplaced: dict[str, str] = {}
        for replica_id in request.replica_ids:
            feasible = [s for s in self._states.values() if s.fits(request)]
            if not feasible:
                unplaced[replica_id] = NO_FEASIBLE_NODE
                continue
            if request.strategy == "spread":
                best = min(
                    feasible,
                    key=lambda s: (
                        s.groups.get(request.group, 0),
                        -s.free_memory,
                        _desc(s.node.id),
                    ),
                )
            else:
                best = min(feasible, key=lambda s: (s.free_memory, s.node.id))
            placements.append(Placement(replica_id, best.node.id, best.take(request)))
        return Plan(placements=tuple(placements), unplaced=unplaced)


def _desc(text: str) -> tuple[int, ...]:
    # Spread walks the index from the largest (free_memory, id) down, so among equal
    # free memory the larger id wins; invert the id to express that as a minimum.
    return (*(-ord(ch) for ch in text), 1)


def group_counts_from(assignments: Mapping[str, tuple[str, str]]) -> dict[str, dict[str, int]]:
    """Build :attr:`Snapshot.group_counts` from ``replica_id -> (group, node_id)``."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for group, node_id in assignments.values():
        counts[group][node_id] = counts[group].get(node_id, 0) + 1
    return dict(counts)
