"""slot volumes: replicas.volume_id (the slot's data, kept across moves), disk limits
(deployments.disk_bytes, nodes.disk_bytes: the allocatable disk of the node) and
released_volumes (the data of removed slots, kept for a grace period)

Existing replicas keep their data directory and SFTP login: their own id becomes
their slot's volume id, so nothing on the nodes is renamed.

Revision ID: 0012_slot_volumes
Revises: 0011_task_queue
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0012_slot_volumes"
down_revision: str | None = "0011_task_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "released_volumes",
        sa.Column("volume_id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("released_at", UtcDateTime(), nullable=False),
        sa.Column("delete_after", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("volume_id", name=op.f("pk_released_volumes")),
    )
    op.create_index(
        op.f("ix_released_volumes_deployment_id"), "released_volumes", ["deployment_id"]
    )
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(sa.Column("volume_id", sa.Uuid(), nullable=True))
    replicas = sa.table("replicas", sa.column("id", sa.Uuid()), sa.column("volume_id", sa.Uuid()))
    op.execute(replicas.update().values(volume_id=replicas.c.id))
    with op.batch_alter_table("replicas") as batch:
        batch.alter_column("volume_id", existing_type=sa.Uuid(), nullable=False)
        batch.create_index("ix_replicas_volume_id", ["volume_id"])
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("disk", sa.String(16), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("disk_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(
            sa.Column("disk_bytes", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    op.drop_index(op.f("ix_released_volumes_deployment_id"), table_name="released_volumes")
    op.drop_table("released_volumes")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("disk_bytes")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("disk_bytes")
        batch.drop_column("disk")
    with op.batch_alter_table("replicas") as batch:
        batch.drop_index("ix_replicas_volume_id")
        batch.drop_column("volume_id")
