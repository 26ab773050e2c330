"""What the planner knows of one schedulable node while it places: its free CPU,
memory, disk and host ports, and how many replicas of each group it holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controlplane.scheduler.model import NodeCapacity, PlacementRequest, Snapshot


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
class NodeState:
    """A node's room left while a plan is made (changed in place by :meth:`take`)."""

    node: NodeCapacity
    free_cpu: int
    free_memory: int
    ports: PortPool
    free_disk: int = 0
    groups: dict[str, int] = field(default_factory=dict)

    def fits(self, request: PlacementRequest) -> bool:
        """True when one replica of `request` may go here."""
        return (
            self.free_cpu >= request.cpu_millis
            and self.free_memory >= request.memory_bytes
            and (not request.disk_bytes or self.free_disk >= request.disk_bytes)
            and self.ports.free >= request.port_count
            and self.node.id not in request.avoid_nodes
            and labels_match(self.node.labels, request.constraints)
        )

    def take(self, request: PlacementRequest) -> tuple[int, ...]:
        """Reserve one replica of `request`; answers its host ports."""
        self.free_cpu -= request.cpu_millis
        self.free_memory -= request.memory_bytes
        self.free_disk -= request.disk_bytes
        if request.group:
            self.groups[request.group] = self.groups.get(request.group, 0) + 1
        return self.ports.take(request.port_count)


def labels_match(labels: Mapping[str, str], constraints: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in constraints.items())


def node_states(snapshot: Snapshot) -> dict[str, NodeState]:
    states: dict[str, NodeState] = {}
    for node in snapshot.nodes:
        if not node.schedulable:
            continue
        states[node.id] = NodeState(
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
