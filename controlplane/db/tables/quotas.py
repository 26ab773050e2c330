"""Per-account quotas set by an admin (see controlplane/quotas.py for how they count).

One row per account, written when the account is made (from the configured
`default_quota`) and replaced by `PUT /v1/users/{id}/quota`. NULL = unlimited.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, utcnow


def _limit() -> Column[int]:
    return Column(BigInteger(), nullable=True)


class AccountQuota(SQLModel, table=True):
    """The limits of one account: deployments, wanted replicas, total CPU
    (millicores), memory and disk (bytes)."""

    __tablename__ = "account_quotas"

    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", primary_key=True)
    deployments: int | None = Field(default=None, sa_column=_limit())
    replicas: int | None = Field(default=None, sa_column=_limit())
    cpu_millis: int | None = Field(default=None, sa_column=_limit())
    memory_bytes: int | None = Field(default=None, sa_column=_limit())
    disk_bytes: int | None = Field(default=None, sa_column=_limit())
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False)
    )
