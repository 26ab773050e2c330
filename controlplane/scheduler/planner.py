"""Placement: which node runs each replica. Pure: no database, no network.

Feasible nodes are schedulable (ready, not draining), carry every constraint label,
and have enough unreserved CPU, memory and free host ports. Among them, ``binpack``
(the default) takes the node with the least free memory that still fits (best fit),
so whole nodes stay free for large requests; ``spread`` takes the node holding the
fewest replicas of the same group, then the one with the most free memory.

:class:`PlacementIndex` keeps nodes sorted by free memory, in blocks that know their
largest free CPU, ports and disk (:mod:`controlplane.scheduler.memory_order`), so a
placement looks at a handful of nodes instead of all of them, and stays valid across
many requests (it is updated in place as replicas land). :func:`plan_brute_force`
scans every node for every replica and gives the same answer; it exists as the
reference for tests and benchmarks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

from controlplane.scheduler.memory_order import MemoryOrder
from controlplane.scheduler.model import Placement, PlacementRequest, Plan, Snapshot
from controlplane.scheduler.node_state import NodeState, node_states

NO_FEASIBLE_NODE = "no_feasible_node"


class PlacementIndex:
    """Schedulable nodes ordered by free memory; answers requests incrementally.

    Each :meth:`place` call commits its placements to the index, so consecutive
    requests see each other's reservations (a whole reconcile pass uses one index).
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self._order = MemoryOrder(node_states(snapshot).values())

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
        state: NodeState,
        request: PlacementRequest,
        replica_id: str,
        placements: list[Placement],
    ) -> None:
        self._order.remove(state)
        ports = state.take(request)
        self._order.add(state)
        placements.append(Placement(replica_id, state.node.id, ports))

    def _pick_binpack(self, request: PlacementRequest) -> NodeState | None:
        return self._order.first_fit(request)

    def _pick_spread(self, request: PlacementRequest) -> NodeState | None:
        best: NodeState | None = None
        best_key: tuple[int, int] | None = None
        for state in self._order.descending(request):
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
        return self._order.ascending_ids()


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
        self._states = node_states(snapshot)

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
