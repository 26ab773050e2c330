"""templates table; deployments made from a template keep its id and resolved record

Revision ID: 0009_templates
Revises: 0008_exec_sessions
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0009_templates"
down_revision: str | None = "0008_exec_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name="fk_templates_created_by_users", ondelete="SET NULL"
        ),
    )
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("template_id", sa.String(63), nullable=True))
        batch.add_column(sa.Column("template", sa.JSON(), nullable=True))
        batch.create_index("ix_deployments_template_id", ["template_id"])


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_index("ix_deployments_template_id")
        batch.drop_column("template")
        batch.drop_column("template_id")
    op.drop_table("templates")
