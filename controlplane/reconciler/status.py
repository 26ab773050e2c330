"""A deployment's overall status, derived from desired and observed state. Pure.

The reconciler records it on the deployment row after each pass
(:func:`deployment_reports`, :func:`next_recorded`); ``GET …/status`` derives it from
the same observations it counts replicas from (:func:`observed_status`). A new
observed state (e.g. an image being pulled) extends :func:`deployment_status` alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from controlplane.reconciler.model import (
    Action,
    DesiredDeployment,
    DesiredReplica,
    ObservedServer,
    RecordCrash,
    Unschedulable,
    World,
)

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


UNSCHEDULABLE_ERROR = "no node can take a replica now"


@dataclass(frozen=True, slots=True)
class DeploymentReport:
    """What the reconciler derives for one deployment: its status and the error shown
    with it (None: no new error)."""

    status: DeploymentStatus
    error: str | None


@dataclass(frozen=True, slots=True)
class RecordedStatus:
    """The status columns of a deployment row; `deployed_at` in seconds (None: never
    ran)."""

    status: str
    error_message: str | None
    deployed_at: float | None


@dataclass(frozen=True, slots=True)
class CallOutcomes:
    """What the agent calls of earlier passes left: the last error of each replica's
    calls, and the replicas whose last call retrying cannot fix (e.g. an image the
    node does not have)."""

    errors: Mapping[str, str] = field(default_factory=dict)
    permanent: Collection[str] = frozenset()


def observed_pairs(world: World) -> dict[str, list[tuple[DesiredReplica, ObservedServer | None]]]:
    """Each deployment's replicas with what their node last reported of them."""
    observed = {
        server_id: server
        for view in world.nodes.values()
        for server_id, server in (view.servers or {}).items()
    }
    pairs: dict[str, list[tuple[DesiredReplica, ObservedServer | None]]] = {}
    for replica in world.replicas:
        pairs.setdefault(replica.deployment_id, []).append((replica, observed.get(replica.id)))
    return pairs


def _after_bookkeeping(world: World, actions: Iterable[Action]) -> World:
    # Judge by the crash counts a pass just wrote, not the state it started from.
    crashes = {a.replica_id: a.crash_streak for a in actions if isinstance(a, RecordCrash)}
    if not crashes:
        return world
    return replace(
        world,
        replicas=[
            replace(r, crash_streak=crashes[r.id]) if r.id in crashes else r for r in world.replicas
        ],
    )


def deployment_reports(
    world: World, actions: Iterable[Action], calls: CallOutcomes
) -> dict[str, DeploymentReport]:
    """Every deployment's status and error after a pass that decided `actions`:
    :func:`deployment_status`, failed also when a replica's call cannot succeed as
    is; the error is the first failed call's, else why a slot cannot be placed."""
    decided = list(actions)
    unschedulable = {a.deployment_id for a in decided if isinstance(a, Unschedulable)}
    pairs = observed_pairs(_after_bookkeeping(world, decided))
    reports: dict[str, DeploymentReport] = {}
    for deployment_id, desired in world.deployments.items():
        replicas = pairs.get(deployment_id, [])
        status = deployment_status(desired, replicas, unschedulable=deployment_id in unschedulable)
        if status == "pending" and any(r.id in calls.permanent for r, _ in replicas):
            status = "failed"
        error = next(
            (calls.errors[r.id] for r, _ in replicas if r.id in calls.errors),
            UNSCHEDULABLE_ERROR if deployment_id in unschedulable else None,
        )
        reports[deployment_id] = DeploymentReport(status, error)
    return reports


def next_recorded(
    recorded: RecordedStatus, report: DeploymentReport, now: float
) -> RecordedStatus | None:
    """The row's new status columns, or None when nothing changes. An error stays
    until another replaces it; `deployed_at` is stamped (`now`, the injected clock)
    the first time the deployment is running."""
    new_error = report.error is not None and report.error != recorded.error_message
    if report.status == recorded.status and not new_error:
        return None
    deployed_at = recorded.deployed_at
    if report.status == "running" and deployed_at is None:
        deployed_at = now
    return RecordedStatus(report.status, report.error or recorded.error_message, deployed_at)


def observed_status(
    deployment: DesiredDeployment,
    replicas: Iterable[tuple[DesiredReplica, ObservedServer | None]],
    recorded: str,
) -> DeploymentStatus:
    """The status ``GET …/status`` answers, derived from the same observations it
    counts replicas from. Failures only the reconciler knows of (no node can take a
    slot, an agent refusing the spec) come from the `recorded` status while nothing
    better is observed."""
    status = deployment_status(deployment, replicas)
    return "failed" if status == "pending" and recorded == "failed" else status
