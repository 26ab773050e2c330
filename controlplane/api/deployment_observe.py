"""/v1/deployments/{id}/status|metrics: what the replicas are doing, from the agents'
latest heartbeats (logs: :mod:`controlplane.api.deployment_logs`)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field
from sqlmodel import col, select

from controlplane.api.context import database
from controlplane.api.deployment_actions import deployment_replicas
from controlplane.api.deployments import owned_deployment
from controlplane.db.tables import Deployment, Node, Replica
from controlplane.port_protocols import TCP, protocol_at
from controlplane.reconciler.model import LABEL_GENERATION, ObservedServer
from controlplane.reconciler.pulls import pull_view
from controlplane.reconciler.status import observed_status
from controlplane.reconciler.world import (
    STATE_NAMES,
    desired_deployment,
    desired_replica,
    observed_server,
)
from controlplane.state import AGENT_POOL
from protos import agent_pb2 as pb


class PublishedPort(BaseModel):
    """A container port and the port of the replica's node it is published on, for
    `protocol` ("tcp", "udp" or "tcp+udp")."""

    container_port: int
    host_port: int
    protocol: str = TCP


class ReplicaStatus(BaseModel):
    """One replica: where it runs and what its agent last said about it."""

    id: str
    ordinal: int
    volume_id: str
    """The slot's data: its directory and SFTP login (`<username>.<first 8 chars>`),
    the same whichever replica runs the slot (docs/stateful.md)."""
    node_id: str | None
    sftp_address: str | None = Field(
        default=None, description="host:port of the SFTP server of the replica's node"
    )
    ports: list[PublishedPort]
    state: str
    health: str
    ready: bool
    generation: int | None
    restart_count: int
    backoff_until: datetime | None
    exit_code: int | None
    oom_killed: bool
    started_at: datetime | None
    error: str | None
    pull: dict[str, Any] | None = None
    """While its image is pulled: image, bytes_done, bytes_total, layers_done, layers_total."""
    image_digest: str | None = None
    install_state: str | None = Field(
        default=None, description="template install: installing, installed or failed"
    )
    install_exit_code: int | None = None
    move_at: datetime | None = None
    """While its node is lost (`state` node_lost) and the deployment waits with a
    `move_after`: when the slot moves to another node."""
    data: str | None = Field(
        default=None,
        description="after a move on node loss: pending, restoring, restore_failed (the"
        " server stays stopped until its data is back), restored (a backup) or empty (none)",
    )
    data_note: str | None = None
    transfer: dict[str, Any] | None = Field(
        default=None,
        description="a move to another node: target_node_id, phase (stopping, transferring,"
        " starting, failed), bytes_sent, volume_bytes, updated_at, error",
    )


class DeploymentError(BaseModel):
    """Why the deployment is not running: a stable code and a message."""

    code: str | None
    message: str


class ReplicaCounts(BaseModel):
    """desired, ready (passing health) and available (running) replicas."""

    desired: int
    ready: int
    available: int


class DeploymentStatusView(BaseModel):
    """Seed 004's status answer plus the per-replica detail."""

    status: str
    health: str
    replicas: ReplicaCounts
    last_health_check: datetime | None
    uptime: str
    uptime_seconds: float
    restart_count: int
    backoff_until: datetime | None
    instances: list[ReplicaStatus]
    error: DeploymentError | None = None


class MetricsView(BaseModel):
    """Summed and per-replica resource use from the agents' latest heartbeats."""

    metrics: dict[str, Any]
    timestamp: datetime


def _ms(value: int) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, UTC) if value > 0 else None


def _observed(
    request: web.Request, replica: Replica
) -> tuple[pb.ServerStatus | None, float | None]:
    pool = request.app.get(AGENT_POOL)
    if pool is None or replica.node_id is None:
        return None, None
    observation = pool.observation(str(replica.node_id))
    if observation is None or observation.servers is None:
        return None, None
    return observation.servers.get(str(replica.id)), observation.last_heartbeat


def _node_lost(
    request: web.Request, deployment: Deployment, replica: Replica
) -> tuple[bool, datetime | None]:
    """Whether the replica's node is down, and when a waiting slot moves (if it does)."""
    pool = request.app.get(AGENT_POOL)
    if pool is None or replica.node_id is None or pool.state(str(replica.node_id)) != "down":
        return False, None
    heard = pool.liveness.last_heard(str(replica.node_id))
    after = deployment.move_after_seconds
    if deployment.on_node_loss != "wait" or after is None or heard is None:
        return True, None
    return True, datetime.fromtimestamp(heard + after, UTC)


def _replica_status(
    request: web.Request, deployment: Deployment, replica: Replica
) -> tuple[ReplicaStatus, ObservedServer | None, float | None]:
    status, heard = _observed(request, replica)
    lost, move_at = _node_lost(request, deployment, replica)
    if lost:
        status = None  # its last report is not what runs now
    observed = observed_server(status) if status else None
    state = "node_lost" if lost else observed.state if observed else "unknown"
    health = observed.health if observed else "unknown"
    generation = status.labels.get(LABEL_GENERATION) if status else None
    view = ReplicaStatus(
        id=str(replica.id),
        ordinal=replica.ordinal,
        volume_id=str(replica.slot_volume),
        node_id=str(replica.node_id) if replica.node_id else None,
        ports=[
            # 0: the container listens on its host port (templates' egg contract).
            PublishedPort(
                container_port=container or host,
                host_port=host,
                protocol=protocol_at(deployment.port_protocols, index),
            )
            for index, (container, host) in enumerate(
                zip(deployment.ports, replica.host_ports, strict=False)
            )
        ],
        state=state,
        health=health,
        ready=observed is not None and observed.ready,
        generation=int(generation) if generation and generation.isdigit() else None,
        restart_count=replica.restart_count,
        backoff_until=replica.backoff_until,
        exit_code=status.exit_code if status and status.exited else None,
        oom_killed=bool(status and status.oom_killed),
        started_at=_ms(status.started_at_ms) if status and state != "offline" else None,
        error=replica.last_error,
        pull=pull_view(status.pull) if status and status.pull.image else None,
        image_digest=(status.image_digest or None) if status else None,
        install_state=status.install_state or None if status else None,
        install_exit_code=status.install_exit_code if status and status.install_state else None,
        move_at=move_at,
        data=replica.restore_state or None,
        data_note=replica.restore_note,
        transfer=replica.transfer,
    )
    return view, observed, heard


async def _add_sftp_addresses(request: web.Request, instances: list[ReplicaStatus]) -> None:
    """Where each replica's files are reachable over SFTP: its node's advertised address
    (the login is `<username>.<volume>`, docs/protocols/sftp.md)."""
    node_ids = {uuid.UUID(i.node_id) for i in instances if i.node_id}
    if not node_ids:
        return
    statement = select(Node.id, Node.sftp_address).where(col(Node.id).in_(node_ids))
    async with database(request).session() as session:
        addresses = {str(node_id): address for node_id, address in await session.exec(statement)}
    for instance in instances:
        instance.sftp_address = addresses.get(instance.node_id or "") or None


def _overall_health(deployment: Deployment, instances: list[ReplicaStatus]) -> str:
    if not deployment.running:
        return "stopped"  # stopped on purpose: nothing is degraded
    if not instances:
        return "unknown"
    if all(i.ready for i in instances):
        return "healthy"
    return "unhealthy" if any(i.health == "unhealthy" for i in instances) else "degraded"


async def deployment_status(request: web.Request) -> DeploymentStatusView:
    """Desired/ready/available replicas, health, uptime, restarts and per-replica state;
    `status` is derived from the same observations as the counts
    (:func:`~controlplane.reconciler.status.observed_status`)."""
    deployment = await owned_deployment(request)
    replicas = await deployment_replicas(request, deployment)
    seen = [_replica_status(request, deployment, r) for r in replicas]
    instances = [view for view, _, _ in seen]
    await _add_sftp_addresses(request, instances)
    heard = [h for _, _, h in seen if h is not None]
    status = observed_status(
        desired_deployment(deployment),
        [(desired_replica(r), o) for r, (_, o, _) in zip(replicas, seen, strict=True)],
        deployment.status,
    )
    started = [i.started_at for i in instances if i.started_at is not None and i.ready]
    uptime = time.time() - min(s.timestamp() for s in started) if started else 0.0
    backoffs = [i.backoff_until for i in instances if i.backoff_until is not None]
    return DeploymentStatusView(
        status=status,
        health=_overall_health(deployment, instances),
        replicas=ReplicaCounts(
            desired=deployment.replicas,
            ready=sum(1 for i in instances if i.ready),
            available=sum(1 for i in instances if i.state == "running"),
        ),
        last_health_check=datetime.fromtimestamp(max(heard), UTC) if heard else None,
        uptime=f"{int(uptime)}s",
        uptime_seconds=round(uptime, 3),
        restart_count=sum(r.restart_count for r in replicas),
        backoff_until=max(backoffs) if backoffs else None,
        instances=instances,
        error=DeploymentError(code=deployment.error_code, message=deployment.error_message)
        if deployment.error_message and deployment.status == "failed"
        else None,
    )


def _stats_of(request: web.Request, replica: Replica) -> pb.ServerStats | None:
    pool = request.app.get(AGENT_POOL)
    if pool is None or replica.node_id is None:
        return None
    observation = pool.observation(str(replica.node_id))
    return None if observation is None else observation.stats.get(str(replica.id))


async def deployment_metrics(request: web.Request) -> MetricsView:
    """CPU, memory and network per replica and summed, as the agents measured them."""
    deployment = await owned_deployment(request)
    per_replica: list[dict[str, Any]] = []
    for replica in await deployment_replicas(request, deployment):
        stats = _stats_of(request, replica)
        if stats is None:
            continue
        per_replica.append(
            {
                "replica_id": str(replica.id),
                "node_id": str(replica.node_id),
                "cpu_absolute": round(stats.cpu_absolute, 3),
                "memory_bytes": stats.memory_bytes,
                "memory_limit_bytes": stats.memory_limit_bytes,
                "network": {
                    "rx_bytes": stats.network.rx_bytes,
                    "tx_bytes": stats.network.tx_bytes,
                },
                "disk_bytes": stats.disk_bytes,
                "uptime_ms": stats.uptime_ms,
                "state": STATE_NAMES.get(stats.state, "offline"),
            }
        )
    total = {
        "cpu_absolute": round(sum(r["cpu_absolute"] for r in per_replica), 3),
        "memory_bytes": sum(r["memory_bytes"] for r in per_replica),
        "memory_limit_bytes": sum(r["memory_limit_bytes"] for r in per_replica),
        "network": {
            "rx_bytes": sum(r["network"]["rx_bytes"] for r in per_replica),
            "tx_bytes": sum(r["network"]["tx_bytes"] for r in per_replica),
        },
        "replicas": per_replica,
    }
    return MetricsView(metrics=total, timestamp=datetime.now(UTC))
