"""Quotas against the database: read an account's limits and usage, and refuse a write
that would take it over a limit (403 `quota_exceeded`).

Race safety: :func:`enforce_quota` first locks the account's `users` row — `SELECT ...
FOR NO KEY UPDATE` on PostgreSQL; on SQLite a no-op UPDATE of the row, which takes the
database's single write lock — and only then counts. Called inside the transaction
that writes the change, two writes of one account are serialised from the count to
the commit, so two creates that fit only one at a time cannot both pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, cast, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.api.errors import Forbidden
from controlplane.db.tables import AccountQuota, Deployment, Task, User
from controlplane.db.tables.tasks import FINISHED_STATUSES
from controlplane.quotas import (
    NOTHING,
    TASK_DISK_BYTES_UNTIL_DISK_RESOURCE,
    QuotaLimits,
    Usage,
    deployment_usage,
    excesses,
    task_usage,
)

_LIMIT_FIELDS = tuple(QuotaLimits.model_fields)


class QuotaExceeded(Forbidden):
    """403: the change would take the account above one of its limits."""

    code = "quota_exceeded"


@dataclass(frozen=True, slots=True)
class Claim:
    """A deployment or task that is about to get these resource fields.

    Fields left None keep the value stored in the database (a new object must give
    them all).
    """

    kind: type[Deployment] | type[Task]
    object_id: uuid.UUID
    replicas: int | None = None
    cpu_millis: int | None = None
    memory_bytes: int | None = None
    disk_bytes: int | None = None

    @classmethod
    def of(cls, row: Deployment | Task) -> Claim:
        """Everything `row` (a new deployment or task, not written yet) asks for."""
        if isinstance(row, Deployment):
            return cls(
                Deployment, row.id, row.replicas, row.cpu_millis, row.memory_bytes, row.disk_bytes
            )
        return cls(Task, row.id, None, row.cpu_millis, row.memory_bytes)

    @classmethod
    def deployment_change(cls, deployment_id: uuid.UUID, values: Mapping[str, Any]) -> Claim:
        """The deployment `deployment_id` about to be updated with `values` (column
        names, as written to the row; other columns are ignored)."""
        return cls(
            Deployment,
            deployment_id,
            values.get("replicas"),
            values.get("cpu_millis"),
            values.get("memory_bytes"),
            values.get("disk_bytes"),
        )


def limits_of(row: AccountQuota | None) -> QuotaLimits:
    """The limits in a quota row (no row: unlimited)."""
    if row is None:
        return QuotaLimits()
    return QuotaLimits(**{name: getattr(row, name) for name in _LIMIT_FIELDS})


async def read_limits(session: AsyncSession, user_id: uuid.UUID) -> QuotaLimits:
    """The account's limits as stored."""
    statement = select(AccountQuota).where(col(AccountQuota.user_id) == user_id)
    return limits_of((await session.exec(statement)).first())


def quota_row(user_id: uuid.UUID, limits: QuotaLimits) -> AccountQuota:
    """A row holding `limits` for the account."""
    return AccountQuota(user_id=user_id, updated_at=datetime.now(UTC), **limits.model_dump())


async def read_usage(session: AsyncSession, user_id: uuid.UUID) -> Usage:
    """What the account reserves now: every deployment (stopped ones too) and every
    task that has not ended."""
    replicas = cast(col(Deployment.replicas), BigInteger)
    deployments = (
        await session.exec(
            select(
                func.count(),
                func.coalesce(func.sum(replicas), 0),
                func.coalesce(func.sum(replicas * col(Deployment.cpu_millis)), 0),
                func.coalesce(func.sum(replicas * col(Deployment.memory_bytes)), 0),
            ).where(col(Deployment.user_id) == user_id)
        )
    ).one()
    disk = (
        await session.exec(
            select(func.coalesce(func.sum(replicas * col(Deployment.disk_bytes)), 0)).where(
                col(Deployment.user_id) == user_id
            )
        )
    ).one()
    tasks = (
        await session.exec(
            select(
                func.count(),
                func.coalesce(func.sum(cast(col(Task.cpu_millis), BigInteger)), 0),
                func.coalesce(func.sum(col(Task.memory_bytes)), 0),
            )
            .where(col(Task.user_id) == user_id)
            .where(col(Task.status).not_in(FINISHED_STATUSES))
        )
    ).one()
    count, wanted, cpu, memory = (int(value) for value in deployments)
    task_count, task_cpu, task_memory = (int(value) for value in tasks)
    return Usage(
        deployments=count,
        replicas=wanted,
        cpu_millis=cpu + task_cpu,
        memory_bytes=memory + task_memory,
        # Tasks have no disk resource (controlplane/quotas.py).
        disk_bytes=int(disk) + task_count * TASK_DISK_BYTES_UNTIL_DISK_RESOURCE,
    )


async def _lock_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # FOR NO KEY UPDATE conflicts with itself, so quota writers of one account queue
        # up, but not with the key-share locks of inserts that merely reference the
        # account (a login's session, a new API key), which FOR UPDATE would block.
        await session.exec(
            select(col(User.id)).where(col(User.id) == user_id).with_for_update(key_share=True)
        )
    else:
        # SQLite has one writer at a time: writing first makes this transaction that
        # writer until it commits (pysqlite begins the transaction at the first write,
        # so no older snapshot is held).
        await session.exec(
            update(User).where(col(User.id) == user_id).values(is_active=col(User.is_active))
        )


async def _stored_usage(session: AsyncSession, claim: Claim) -> tuple[Usage, Claim]:
    """The claimed object's usage as stored (NOTHING if new or ended), and the claim
    with its missing fields filled in from the row."""
    if claim.kind is Deployment:
        row = (
            await session.exec(
                select(
                    col(Deployment.replicas),
                    col(Deployment.cpu_millis),
                    col(Deployment.memory_bytes),
                    col(Deployment.disk_bytes),
                ).where(col(Deployment.id) == claim.object_id)
            )
        ).first()
        if row is None:
            return NOTHING, claim
        replicas, cpu, memory, disk = row
        full = Claim(
            Deployment,
            claim.object_id,
            replicas if claim.replicas is None else claim.replicas,
            cpu if claim.cpu_millis is None else claim.cpu_millis,
            memory if claim.memory_bytes is None else claim.memory_bytes,
            disk if claim.disk_bytes is None else claim.disk_bytes,
        )
        return deployment_usage(replicas, cpu, memory, disk), full
    task = (
        await session.exec(
            select(col(Task.cpu_millis), col(Task.memory_bytes), col(Task.status)).where(
                col(Task.id) == claim.object_id
            )
        )
    ).first()
    if task is None or task[2] in FINISHED_STATUSES:
        return NOTHING, claim
    return task_usage(task[0], task[1]), claim


def _claimed_usage(claim: Claim) -> Usage:
    cpu, memory = claim.cpu_millis or 0, claim.memory_bytes or 0
    if claim.kind is Deployment:
        return deployment_usage(claim.replicas or 0, cpu, memory, claim.disk_bytes or 0)
    return task_usage(cpu, memory)


async def enforce_quota(session: AsyncSession, user_id: uuid.UUID, claim: Claim) -> None:
    """Raise QuotaExceeded if `claim` raises a resource of the account above its limit.

    Call it inside the transaction that writes the change, *before* writing it; the
    account stays locked until that transaction ends.
    """
    with session.no_autoflush:
        await _lock_account(session, user_id)
        limits = await read_limits(session, user_id)
        if limits == QuotaLimits():
            return
        before, claim = await _stored_usage(session, claim)
        usage = await read_usage(session, user_id)
    found = excesses(limits, usage, before, _claimed_usage(claim))
    if found:
        raise QuotaExceeded(
            "quota exceeded: " + "; ".join(excess.sentence() for excess in found),
            details=[excess.describe() for excess in found],
        )
