"""custom_domains: deployments' own domain names and their verification; the web
port a deployment's ingress route uses (deployments.http_port)

Revision ID: 0010_custom_domains
Revises: 0009_templates
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0010_custom_domains"
down_revision: str | None = "0009_templates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("http_port", sa.Integer(), nullable=True))
    op.create_table(
        "custom_domains",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(253), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("verified_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_custom_domains_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_custom_domains_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_custom_domains"),
        sa.UniqueConstraint(
            "deployment_id", "domain", name="uq_custom_domains_deployment_id_domain"
        ),
    )
    op.create_index("ix_custom_domains_deployment_id", "custom_domains", ["deployment_id"])
    op.create_index("ix_custom_domains_user_id", "custom_domains", ["user_id"])
    op.create_index("ix_custom_domains_domain", "custom_domains", ["domain"])


def downgrade() -> None:
    op.drop_table("custom_domains")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("http_port")
