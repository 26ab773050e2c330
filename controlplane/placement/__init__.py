"""The one placement path for deployments and tasks: one capacity snapshot
(:func:`load_claims` + the nodes as the agent pool sees them) and one commit point
(:class:`PlacementApplier`) that re-checks every proposal against what is already
committed. The decisions themselves are pure, in :mod:`controlplane.scheduler`."""

from controlplane.placement.applier import Fence, PlacementApplier, PlacementRefused, Proposal
from controlplane.placement.claims import load_claims, task_claims

__all__ = [
    "Fence",
    "PlacementApplier",
    "PlacementRefused",
    "Proposal",
    "load_claims",
    "task_claims",
]
