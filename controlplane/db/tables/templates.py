"""Templates added over the API (the bundled ones ship as package data)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, utcnow


class TemplateRow(SQLModel, table=True):
    """One template: `document` is the validated model as JSON, `warnings` what its
    egg import could not convert."""

    __tablename__ = "templates"

    id: str = Field(primary_key=True, max_length=63)
    version: str = Field(max_length=64)
    name: str = Field(max_length=255)
    document: dict[str, Any] = Field(sa_column=Column(JSON(), nullable=False))
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON(), nullable=False))
    created_by: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
