"""Volumes whose slot is gone, and copies left behind: kept for a grace period, then
removed by the sweep (controlplane/volumes/sweep.py).

A row is written when a slot is removed by scale-down (`delete_after` NULL: kept for
the control plane's `volume_grace_seconds` after `released_at`) or when its
deployment is deleted with `delete_data=true` (`delete_after` = the moment of
deletion). The data may sit on several nodes (copies a moved slot left behind); the
orphaned-volume listings show these rows' dates (docs/stateful.md). No foreign keys:
the row outlives its deployment (and goes once no node holds its data).

A :class:`VolumeCopy` row records one copy the sweep found on one node: when it was
first seen stale (a copy of a slot placed on another node: its grace starts then), and
what the sweep's deletion did (`deleted_at`, or `last_error` and `attempts` while the
node refuses or cannot be reached; it is tried again on the next pass).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from controlplane.db.tables.orchestration import Replica
from controlplane.db.types import UtcDateTime, utcnow


class ReleasedVolume(SQLModel, table=True):
    """The volume of slot `ordinal` of `deployment_id`, released at `released_at`."""

    __tablename__ = "released_volumes"

    volume_id: uuid.UUID = Field(primary_key=True)
    deployment_id: uuid.UUID = Field(index=True)
    user_id: uuid.UUID | None = None
    ordinal: int
    released_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    delete_after: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )

    @classmethod
    def of(
        cls, replica: Replica, user_id: uuid.UUID | None, delete_after: datetime | None = None
    ) -> ReleasedVolume:
        """The volume of `replica`'s slot, released now."""
        return cls(
            volume_id=replica.slot_volume,
            deployment_id=replica.deployment_id,
            user_id=user_id,
            ordinal=replica.ordinal,
            delete_after=delete_after,
        )


class VolumeCopy(SQLModel, table=True):
    """The copy of volume `volume_id` on node `node_id` that no slot there uses."""

    __tablename__ = "volume_copies"

    volume_id: str = Field(primary_key=True, max_length=63)
    node_id: uuid.UUID = Field(primary_key=True)
    deployment_id: uuid.UUID | None = Field(default=None, index=True)
    ordinal: int | None = None
    found_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    deleted_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=1000)
