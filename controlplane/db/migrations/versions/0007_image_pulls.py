"""deployments: pull policy, sealed registry credentials, the pinned image digest,
and the code of the last error

Revision ID: 0007_image_pulls
Revises: 0006_account_quotas
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_image_pulls"
down_revision: str | None = "0006_account_quotas"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("pull_policy", sa.String(16), nullable=False, server_default="if_not_present"),
        sa.Column("registry_username", sa.String(255), nullable=True),
        sa.Column("registry_password_sealed", sa.String(8192), nullable=True),
        sa.Column("registry_server", sa.String(255), nullable=False, server_default=""),
        sa.Column("image_digest", sa.String(512), nullable=False, server_default=""),
        sa.Column("image_digest_generation", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error_code", sa.String(64), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for column in _columns():
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        for column in reversed(_columns()):
            batch.drop_column(column.name)
