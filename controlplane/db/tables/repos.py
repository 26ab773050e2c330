"""Watched forge repositories (seed 003's watch list) and what their releases were
when last checked. A forge token is stored sealed (controlplane/security/secrets.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, new_id, utcnow


class Repo(SQLModel, table=True):
    """One repository on an account's watch list.

    `latest_version` is the tag of the newest release seen (empty: none yet) and
    `latest_release_assets` its assets as the forge listed them (name, size,
    content_type, browser_download_url, api_url).
    """

    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("user_id", "owner_name", "name"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    owner_name: str = Field(max_length=100)
    name: str = Field(max_length=100)
    token_sealed: str = Field(default="", max_length=2000)
    latest_version: str = Field(default="", max_length=255)
    latest_release_name: str = Field(default="", max_length=255)
    latest_release_assets: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    checked_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
