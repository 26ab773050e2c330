"""The inputs and outputs of placement: plain values, no database, no network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Strategy = Literal["binpack", "spread"]
STRATEGIES: frozenset[str] = frozenset({"binpack", "spread"})


@dataclass(frozen=True, slots=True)
class NodeCapacity:
    """One node as the planner sees it.

    `cpu_millis`/`memory_bytes` are what the node offers to containers;
    `cpu_reserved`/`memory_reserved` what replicas already placed on it take.
    `used_ports` are host ports already bound from `port_range` (inclusive bounds).
    `disk_bytes` is the room the node offers volumes with a disk limit (0: none, so
    only work without a disk limit goes there); `disk_reserved` what limits placed
    on it already hold (no overcommit).
    """

    id: str
    cpu_millis: int
    memory_bytes: int
    port_range: tuple[int, int]
    cpu_reserved: int = 0
    memory_reserved: int = 0
    disk_bytes: int = 0
    disk_reserved: int = 0
    used_ports: frozenset[int] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True
    draining: bool = False

    @property
    def schedulable(self) -> bool:
        """Only ready, non-draining nodes take new work."""
        return self.ready and not self.draining


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every node at one moment, plus how many replicas of each deployment each holds
    (`group_counts[group][node_id]`), which the spread strategy balances."""

    nodes: Sequence[NodeCapacity]
    group_counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    """Place each of `replica_ids`, each needing the same resources and `port_count`
    host ports, on nodes whose labels include every `constraints` pair.

    `group` names the replicas' deployment; spread balances replicas of one group,
    `avoid_nodes` excludes nodes (e.g. the one a replica is moving off).
    """

    replica_ids: Sequence[str]
    cpu_millis: int
    memory_bytes: int
    port_count: int = 0
    disk_bytes: int = 0
    constraints: Mapping[str, str] = field(default_factory=dict)
    strategy: Strategy = "binpack"
    group: str = ""
    avoid_nodes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Placement:
    """Replica `replica_id` goes to `node_id` with these host ports (in request order)."""

    replica_id: str
    node_id: str
    host_ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome: placements made, and replicas that fit nowhere with the reason."""

    placements: tuple[Placement, ...]
    unplaced: Mapping[str, str]

    @property
    def complete(self) -> bool:
        """True when every requested replica was placed."""
        return not self.unplaced
