"""Volumes whose slot is gone: their data is kept for a grace period, then removed.

A row is written when a slot is removed by scale-down (`delete_after` NULL: kept for
the control plane's `volume_grace_seconds` after `released_at`) or when its
deployment is deleted with `delete_data=true` (`delete_after` = the moment of
deletion). The data may sit on several nodes (copies a moved slot left behind); the
orphaned-volume listings show these rows' dates (docs/stateful.md). No foreign keys:
the row outlives its deployment.
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
