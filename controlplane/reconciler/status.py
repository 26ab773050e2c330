"""A deployment's overall status, derived from desired and observed state. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from controlplane.reconciler.model import DesiredDeployment, DesiredReplica, ObservedServer

DeploymentStatus = Literal["pending", "running", "updating", "stopped", "failed"]
DEPLOYMENT_STATUSES: tuple[str, ...] = ("pending", "running", "updating", "stopped", "failed")
# A replica that crashed this many times in a row counts as failing.
FAILING_STREAK = 3


def replica_failing(
    deployment: DesiredDeployment, replica: DesiredReplica, observed: ObservedServer | None
) -> bool:
    """Crash-looping, or exited for good under its restart policy."""
    if replica.crash_streak >= FAILING_STREAK:
        return True
    if observed is None or observed.state != "offline" or not observed.exited:
        return False
    if observed.finished_at_ms / 1000 < deployment.run_since:
        return False
    return deployment.restart_policy == "never" or (
        deployment.restart_policy == "on-failure" and observed.exit_code != 0
    )


def deployment_status(
    deployment: DesiredDeployment,
    replicas: Iterable[tuple[DesiredReplica, ObservedServer | None]],
    *,
    unschedulable: bool = False,
) -> DeploymentStatus:
    """stopped when asked to stop; running when every replica is ready at the current
    generation; updating while older generations remain; failed when a replica
    crash-loops, exited for good or cannot be placed; pending otherwise."""
    if not deployment.running:
        return "stopped"
    pairs = list(replicas)
    current_ready = sum(
        1
        for _, observed in pairs
        if observed is not None and observed.ready and observed.generation >= deployment.generation
    )
    if current_ready >= deployment.replicas:
        return "running"
    if unschedulable or any(replica_failing(deployment, r, o) for r, o in pairs):
        return "failed"
    if any(o is not None and o.generation < deployment.generation for _, o in pairs):
        return "updating"
    return "pending"
