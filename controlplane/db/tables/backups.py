"""Backups of deployments' slots (restic snapshots on the agents) and each
deployment's backup policy: schedule, retention, ignore patterns, console commands
(docs/stateful.md).

A backup row is written `pending` before its agent is asked, becomes `running`, then
`completed` (with the snapshot, its repository, size and checksum) or `failed` (with
the error); a delete claims an unlocked one as `deleting` first. `repository` names
where the snapshot is: a node's own repository (`node:<id>`) is reachable from that
node only, a fleet repository from every node that uses it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, new_id, utcnow

PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
#: Being forgotten in its repository: no longer lockable, restorable or downloadable.
DELETING = "deleting"


class Backup(SQLModel, table=True):
    """One backup of slot `ordinal` of `deployment_id`."""

    __tablename__ = "backups"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    deployment_id: uuid.UUID = Field(foreign_key="deployments.id", ondelete="CASCADE", index=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    ordinal: int = 0
    volume_id: uuid.UUID | None = None
    node_id: uuid.UUID | None = None  # the node that took it (no foreign key: kept after)
    name: str = Field(max_length=100)
    locked: bool = False
    state: str = Field(default=PENDING, max_length=16)
    trigger: str = Field(default="manual", max_length=16)  # manual | schedule
    repository: str | None = Field(default=None, max_length=500)
    snapshot_id: str | None = Field(default=None, max_length=64)
    size_bytes: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    files: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    checksum: str | None = Field(default=None, max_length=100)
    error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False, index=True)
    )
    completed_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class BackupPolicy(SQLModel, table=True):
    """How a deployment is backed up; absent: manual backups only, all kept, the
    template's console commands."""

    __tablename__ = "backup_policies"

    deployment_id: uuid.UUID = Field(
        foreign_key="deployments.id", ondelete="CASCADE", primary_key=True
    )
    schedule: str | None = Field(default=None, max_length=100)  # cron, UTC
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    ignore: list[str] = Field(default_factory=list, sa_column=Column(JSON(), nullable=False))
    # None: the template's (deployments.template["backup"]).
    commands: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(), nullable=True))
    last_scheduled_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
