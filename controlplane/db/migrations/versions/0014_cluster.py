"""cluster: the shared-secret fingerprints and the leader's fencing epoch

Revision ID: 0014_cluster
Revises: 0013_events
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0014_cluster"
down_revision: str | None = "0013_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    cluster = op.create_table(
        "cluster",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("leader_epoch", sa.BigInteger(), nullable=False),
        sa.Column("leader_name", sa.String(200), nullable=False),
        sa.Column("leader_since", UtcDateTime(), nullable=True),
        sa.Column("jwt_secret_fingerprint", sa.String(100), nullable=True),
        sa.Column("secrets_key_fingerprint", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cluster"),
    )
    op.bulk_insert(cluster, [{"id": 1, "leader_epoch": 0, "leader_name": ""}])


def downgrade() -> None:
    op.drop_table("cluster")
