"""Custom domains of deployments (docs/ingress.md).

A row is a claim of `domain` by `user_id` for `deployment_id`: pending until its
owner proves control (a DNS TXT record or an HTTP token carrying `token`), verified
after. Several accounts may hold pending claims of one name; only one verified claim
of a name exists at a time: a partial unique index on `domain` where the state is
verified holds it even for two verifications racing (the API maps it to 409).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, new_id, utcnow

VERIFIED_ONLY = text("state = 'verified'")


class CustomDomain(SQLModel, table=True):
    __tablename__ = "custom_domains"
    __table_args__ = (
        UniqueConstraint("deployment_id", "domain"),
        Index(
            "ux_custom_domains_verified_domain",
            "domain",
            unique=True,
            sqlite_where=VERIFIED_ONLY,
            postgresql_where=VERIFIED_ONLY,
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    deployment_id: uuid.UUID = Field(foreign_key="deployments.id", ondelete="CASCADE", index=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    domain: str = Field(max_length=253, index=True)
    state: str = Field(default="pending_verification", max_length=32)
    token: str = Field(max_length=64)
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
    verified_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
