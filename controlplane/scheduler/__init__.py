"""Pure placement of replicas on nodes: ``plan(snapshot, request) -> Plan``."""

from controlplane.scheduler.model import (
    STRATEGIES,
    NodeCapacity,
    Placement,
    PlacementRequest,
    Plan,
    Snapshot,
    Strategy,
)
from controlplane.scheduler.planner import (
    NO_FEASIBLE_NODE,
    BruteForceIndex,
    PlacementIndex,
    plan,
    plan_brute_force,
)

__all__ = [
    "NO_FEASIBLE_NODE",
    "STRATEGIES",
    "BruteForceIndex",
    "NodeCapacity",
    "Placement",
    "PlacementIndex",
    "PlacementRequest",
    "Plan",
    "Snapshot",
    "Strategy",
    "plan",
    "plan_brute_force",
]
