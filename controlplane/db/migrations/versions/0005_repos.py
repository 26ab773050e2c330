"""repos: seed 003's watch list of forge repositories; tasks may run a release asset

Revision ID: 0005_repos
Revises: 0004_run_as_root
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0005_repos"
down_revision: str | None = "0004_run_as_root"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "repos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("owner_name", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_sealed", sa.String(2000), nullable=False),
        sa.Column("latest_version", sa.String(255), nullable=False),
        sa.Column("latest_release_name", sa.String(255), nullable=False),
        sa.Column("latest_release_assets", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("checked_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_repos_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_repos"),
        sa.UniqueConstraint(
            "user_id", "owner_name", "name", name="uq_repos_user_id_owner_name_name"
        ),
    )
    op.create_index("ix_repos_user_id", "repos", ["user_id"])
    op.add_column("tasks", sa.Column("repo_id", sa.Uuid(), nullable=True))
    op.add_column(
        "tasks", sa.Column("release_asset", sa.String(255), nullable=False, server_default="")
    )
    op.add_column(
        "tasks", sa.Column("release_tag", sa.String(255), nullable=False, server_default="")
    )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("release_tag")
        batch.drop_column("release_asset")
        batch.drop_column("repo_id")
    op.drop_index("ix_repos_user_id", table_name="repos")
    op.drop_table("repos")
