"""Per-account webhooks: where an account's own events are POSTed, and the key that
signs them (kept in the clear: it is needed to sign, and the owner saw it once)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, new_id, utcnow


class Webhook(SQLModel, table=True):
    """One receiver of an account's events."""

    __tablename__ = "webhooks"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=100)
    description: str = Field(default="", max_length=500)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
