"""Pure placement of replicas and tasks on nodes: ``plan(snapshot, request) -> Plan``,
the claims placed work holds (``snapshot_of``) and the re-check at commit (``admit``)."""

from controlplane.scheduler.capacity import Claim, admit, snapshot_of
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
    "Claim",
    "NodeCapacity",
    "Placement",
    "PlacementIndex",
    "PlacementRequest",
    "Plan",
    "Snapshot",
    "Strategy",
    "admit",
    "plan",
    "plan_brute_force",
    "snapshot_of",
]
