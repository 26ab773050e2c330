"""account quotas: per-account limits on deployments, replicas, CPU, memory and disk

Revision ID: 0006_account_quotas
Revises: 0005_repos
Create Date: 2026-12-02

Accounts that exist already get a row of NULLs (unlimited): they were made before
there were quotas, and an admin sets theirs with PUT /v1/users/{id}/quota.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0006_account_quotas"
down_revision: str | None = "0005_repos"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIMITS = ("deployments", "replicas", "cpu_millis", "memory_bytes", "disk_bytes")


def upgrade() -> None:
    op.create_table(
        "account_quotas",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in LIMITS),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_account_quotas_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_account_quotas"),
    )
    op.execute("INSERT INTO account_quotas (user_id, updated_at) SELECT id, updated_at FROM users")


def downgrade() -> None:
    op.drop_table("account_quotas")
