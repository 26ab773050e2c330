"""Translation between the database rows, the agents' reports and the pure model:
rows -> :class:`World`, ``pb.ServerStatus`` -> :class:`ObservedServer`, and a
deployment + replica -> the ``pb.ServerSpec`` an agent creates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from controlplane.agents import AgentPool
from controlplane.db.tables import Deployment, Node, Replica
from controlplane.port_protocols import port_bindings
from controlplane.reconciler.model import (
    AWAITING_DATA,
    LABEL_APP,
    LABEL_DEPLOYMENT,
    LABEL_GENERATION,
    LABEL_NODE,
    LABEL_REPLICA,
    TRANSFER_LEASE_SECONDS,
    DesiredDeployment,
    DesiredReplica,
    NodeLossPolicy,
    NodeStatus,
    NodeView,
    ObservedHealth,
    ObservedServer,
    ObservedState,
    RestartPolicy,
    World,
)
from controlplane.scheduler import Claim, NodeCapacity, Strategy
from controlplane.templates.server_spec import apply_template_record
from protos import agent_pb2 as pb

STATE_NAMES: dict[int, ObservedState] = {
    pb.SERVER_STATE_PULLING: "pulling",
    pb.SERVER_STATE_OFFLINE: "offline",
    pb.SERVER_STATE_STARTING: "starting",
    pb.SERVER_STATE_RUNNING: "running",
    pb.SERVER_STATE_STOPPING: "stopping",
}
HEALTH_NAMES: dict[int, ObservedHealth] = {
    pb.HEALTH_UNSPECIFIED: "none",
    pb.HEALTH_STARTING: "starting",
    pb.HEALTH_HEALTHY: "healthy",
    pb.HEALTH_UNHEALTHY: "unhealthy",
}


@dataclass(slots=True)
class Rows:
    """The tables one reconciler pass loaded, by id, and the room other work (running
    tasks) holds on the nodes."""

    deployments: dict[str, Deployment]
    replicas: dict[str, Replica]
    nodes: dict[str, Node]
    claims: list[Claim]


def epoch_seconds(moment: datetime | None) -> float | None:
    """`moment` as seconds since the epoch (None stays None)."""
    return None if moment is None else moment.timestamp()


def observed_server(status: pb.ServerStatus) -> ObservedServer:
    """The reconciler's view of one reported server."""
    try:
        generation = int(status.labels.get(LABEL_GENERATION, "0"))
    except ValueError:
        generation = 0
    return ObservedServer(
        id=status.id,
        state=STATE_NAMES.get(status.state, "offline"),
        health=HEALTH_NAMES.get(status.health, "none"),
        generation=generation,
        exited=status.exited,
        exit_code=status.exit_code,
        started_at_ms=status.started_at_ms,
        finished_at_ms=status.finished_at_ms,
        pulling=bool(status.pull.image),
    )


def desired_deployment(row: Deployment) -> DesiredDeployment:
    """A deployment row as the reconciler wants it."""
    return DesiredDeployment(
        id=str(row.id),
        replicas=row.replicas,
        running=row.running,
        generation=row.generation,
        cpu_millis=row.cpu_millis,
        memory_bytes=row.memory_bytes,
        port_count=len(row.ports),
        disk_bytes=row.disk_bytes,
        restart_policy=cast(RestartPolicy, row.restart_policy),
        strategy=cast(Strategy, row.strategy),
        constraints=dict(row.constraints),
        run_since=row.run_since.timestamp(),
        on_node_loss=cast(NodeLossPolicy, row.on_node_loss),
        move_after=None if row.move_after_seconds is None else float(row.move_after_seconds),
    )


def desired_replica(row: Replica) -> DesiredReplica:
    """A replica row as the reconciler wants it."""
    return DesiredReplica(
        id=str(row.id),
        deployment_id=str(row.deployment_id),
        ordinal=row.ordinal,
        node_id=None if row.node_id is None else str(row.node_id),
        host_ports=tuple(row.host_ports),
        volume_id=str(row.slot_volume),
        restart_count=row.restart_count,
        crash_streak=row.crash_streak,
        handled_exit_ms=row.handled_exit_ms,
        backoff_until=epoch_seconds(row.backoff_until),
        start_issued_at=epoch_seconds(row.start_issued_at),
        transfer_until=_transfer_until(row.transfer),
        awaiting_data=row.restore_state in AWAITING_DATA,
    )


def _transfer_until(mark: Mapping[str, Any] | None) -> float | None:
    """Until when a move's mark holds the slot (None: no move under way)."""
    if not mark or mark.get("phase") in (None, "failed"):
        return None
    try:
        return float(mark.get("updated_at", 0)) + TRANSFER_LEASE_SECONDS
    except (TypeError, ValueError):
        return None


def node_view(row: Node, pool: AgentPool) -> NodeView:
    """Capacity from the row (allocatable disk: as the connected agent reports it now,
    for nodes enrolled before it was reported), liveness and servers from the pool."""
    observation = pool.observation(str(row.id))
    disk = row.disk_bytes
    if observation is not None and observation.info is not None:
        disk = observation.info.fingerprint.allocatable_disk_bytes or disk
    capacity = NodeCapacity(
        id=str(row.id),
        cpu_millis=row.cpu_millis,
        memory_bytes=row.memory_bytes,
        disk_bytes=disk,
        port_range=(row.port_range_start, row.port_range_end),
        labels=dict(row.labels),
    )
    liveness = pool.state(str(row.id))
    status: NodeStatus
    if row.status == "pending" or liveness == "unknown":
        status = "pending"
    elif liveness == "down":
        status = "down"
    else:
        status = "draining" if row.draining else "ready"
    servers = None
    if status != "pending" and observation is not None and observation.servers is not None:
        servers = {
            server_id: observed_server(s)
            for server_id, s in observation.servers.items()
            if LABEL_REPLICA in s.labels
        }
    down_since = None
    if status == "down":
        heard = pool.liveness.last_heard(str(row.id))
        down_since = heard if heard is not None else epoch_seconds(row.last_seen)
    return NodeView(capacity=capacity, status=status, servers=servers, down_since=down_since)


def world_of(
    deployments: Iterable[Deployment],
    replicas: Iterable[Replica],
    nodes: Iterable[Node],
    pool: AgentPool,
    claims: Sequence[Claim] = (),
) -> World:
    """Everything one pass decides from; `claims` is the room work other than
    replicas (running tasks) holds on the nodes."""
    return World(
        deployments={str(d.id): desired_deployment(d) for d in deployments},
        replicas=[desired_replica(r) for r in replicas],
        nodes={str(n.id): node_view(n, pool) for n in nodes},
        claims=tuple(claims),
    )


def _health_check(config: Mapping[str, Any] | None) -> pb.HealthCheck | None:
    if not config:
        return None
    check = pb.HealthCheck(
        initial_delay_seconds=int(config.get("initial_delay_seconds", 0)),
        period_seconds=int(config.get("period_seconds", 10)),
        timeout_seconds=int(config.get("timeout_seconds", 5)),
        failure_threshold=int(config.get("failure_threshold", 3)),
    )
    if config.get("command"):
        check.command = str(config["command"])
    elif config.get("tcp_port"):
        check.tcp_port = int(config["tcp_port"])
    elif config.get("path"):
        check.http_path = str(config["path"])
    else:
        return None
    return check


PULL_POLICIES = {
    "if_not_present": pb.PULL_POLICY_IF_NOT_PRESENT,
    "always": pb.PULL_POLICY_ALWAYS,
    "never": pb.PULL_POLICY_NEVER,
}


def pinned_image(deployment: Deployment) -> str:
    """The image to run: the digest its tag resolved to for the current generation
    (the first node that pulled reported it), else the reference as given."""
    if deployment.image_digest and deployment.image_digest_generation == deployment.generation:
        return deployment.image_digest
    return deployment.image


def server_spec(
    deployment: Deployment,
    replica: Replica,
    node_id: str,
    registry_password: str | None = None,
) -> pb.ServerSpec:
    """What the agent must create for `replica` of `deployment` on `node_id`;
    `registry_password` is the opened password of the deployment's credentials."""
    ports = port_bindings(deployment.ports, deployment.port_protocols, replica.host_ports)
    spec = pb.ServerSpec(
        id=str(replica.id),
        image=pinned_image(deployment),
        pull_policy=PULL_POLICIES.get(deployment.pull_policy, pb.PULL_POLICY_IF_NOT_PRESENT),
        command=list(deployment.command),
        env=dict(deployment.env_vars),
        ports=ports,
        resources=pb.Resources(
            memory_bytes=deployment.memory_bytes,
            cpu_millis=deployment.cpu_millis,
            disk_bytes=deployment.disk_bytes,
        ),
        labels={
            LABEL_DEPLOYMENT: str(deployment.id),
            LABEL_REPLICA: str(replica.id),
            LABEL_GENERATION: str(deployment.generation),
            LABEL_NODE: node_id,
            LABEL_APP: deployment.app_name,
        },
        stop=pb.StopPolicy(
            command=deployment.stop_command,
            signal=deployment.stop_signal,
            timeout_seconds=deployment.stop_timeout,
        ),
        open_stdin=True,
        run_as_root=deployment.run_as_root,
        volume_id=str(replica.slot_volume),
    )
    check = _health_check(deployment.health_check)
    if check is not None:
        spec.health_check.CopyFrom(check)
    if deployment.registry_username is not None and registry_password is not None:
        spec.registry_auth.CopyFrom(
            pb.RegistryAuth(
                username=deployment.registry_username,
                password=registry_password,
                server_address=deployment.registry_server,
            )
        )
    apply_template_record(spec, deployment.template)
    return spec
