"""The cluster's one row: what every control plane sharing the database must agree
on — the fingerprints of the shared secrets and the leader's fencing epoch."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime

CLUSTER_ROW_ID = 1


class Cluster(SQLModel, table=True):
    """Row `CLUSTER_ROW_ID` only (made by the migration).

    `leader_epoch` grows by one at every takeover of leadership; the leader's writes
    check it in their own transaction, so a deposed leader's late writes are refused.
    The fingerprints are keyed hashes (HMAC of a constant under each secret), written
    by the first control plane to start and compared by every later one."""

    __tablename__ = "cluster"

    id: int = Field(primary_key=True)
    leader_epoch: int = Field(default=0, sa_column=Column(BigInteger(), nullable=False))
    leader_name: str = Field(default="", max_length=200)
    leader_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    jwt_secret_fingerprint: str | None = Field(default=None, max_length=100)
    secrets_key_fingerprint: str | None = Field(default=None, max_length=100)
