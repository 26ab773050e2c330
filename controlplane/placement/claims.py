"""The room placed work holds, read from the database: one :class:`Claim` per placed
replica (its deployment's resources, disk limit included, and its host ports) and per
running task."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.db.tables import Deployment, Replica
from controlplane.db.tables.tasks import RUNNING, Task
from controlplane.scheduler import Claim


async def task_claims(session: AsyncSession) -> list[Claim]:
    """What running tasks hold on their nodes."""
    statement = select(Task.node_id, Task.cpu_millis, Task.memory_bytes).where(
        col(Task.status) == RUNNING, col(Task.node_id).is_not(None)
    )
    return [
        Claim(node_id=str(node_id), cpu_millis=cpu, memory_bytes=memory)
        for node_id, cpu, memory in (await session.exec(statement)).all()
    ]


async def replica_claims(session: AsyncSession) -> list[Claim]:
    """What placed replicas hold on their nodes (a stopped deployment's replicas keep
    their room: they start again where they are)."""
    statement = (
        select(Replica, Deployment.cpu_millis, Deployment.memory_bytes, Deployment.disk_bytes)
        .join(Deployment, col(Deployment.id) == col(Replica.deployment_id))
        .where(col(Replica.node_id).is_not(None))
    )
    return [
        Claim(
            node_id=str(replica.node_id),
            cpu_millis=cpu,
            memory_bytes=memory,
            host_ports=tuple(replica.host_ports),
            group=str(replica.deployment_id),
            disk_bytes=disk,
        )
        for replica, cpu, memory, disk in (await session.exec(statement)).all()
    ]


async def load_claims(session: AsyncSession) -> list[Claim]:
    """Everything committed: placed replicas and running tasks."""
    return [*await replica_claims(session), *await task_claims(session)]
