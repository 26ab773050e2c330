"""Exec sessions: who ran which command in which replica's container, when, and how
it ended. A row is written when the control plane issues the exec token (its id is
the token's `jti`); the agent fills in the end (`POST /v1/remote/exec-sessions/{id}/end`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, new_id, utcnow


class ExecSession(SQLModel, table=True):
    """One exec token issued, and what became of it. `username` is kept as it was,
    so the record outlives a renamed or deleted account (`user_id` then null)."""

    __tablename__ = "exec_sessions"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    deployment_id: uuid.UUID = Field(foreign_key="deployments.id", ondelete="CASCADE", index=True)
    replica: int
    server_id: uuid.UUID
    node_id: uuid.UUID | None = Field(default=None, foreign_key="nodes.id", ondelete="SET NULL")
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id", ondelete="SET NULL")
    username: str = Field(max_length=64)
    command: list[str] = Field(default_factory=list, sa_column=Column(JSON(), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False, index=True)
    )
    started_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    exit_code: int | None = None
    end_reason: str = Field(default="", max_length=200)
