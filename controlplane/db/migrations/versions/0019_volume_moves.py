"""volume moves: deployments.on_node_loss / move_after_seconds (what a slot does when
its node is lost), replicas.restore_state / restore_note (whether a slot moved after
node loss got its data back), replicas.transfer (a move between live nodes under
way, or how it failed) and volume_copies (copies the sweep found and deleted)

Existing deployments keep today's behaviour (`move`).

Revision ID: 0019_volume_moves
Revises: 0018_backups
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0019_volume_moves"
down_revision: str | None = "0018_backups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "volume_copies",
        sa.Column("volume_id", sa.String(63), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("ordinal", sa.Integer(), nullable=True),
        sa.Column("found_at", UtcDateTime(), nullable=False),
        sa.Column("deleted_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("volume_id", "node_id", name=op.f("pk_volume_copies")),
    )
    op.create_index(op.f("ix_volume_copies_deployment_id"), "volume_copies", ["deployment_id"])
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(
            sa.Column("on_node_loss", sa.String(8), nullable=False, server_default="move")
        )
        batch.add_column(sa.Column("move_after_seconds", sa.Integer(), nullable=True))
    with op.batch_alter_table("replicas") as batch:
        batch.add_column(
            sa.Column("restore_state", sa.String(16), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("restore_note", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("transfer", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replicas") as batch:
        batch.drop_column("transfer")
        batch.drop_column("restore_note")
        batch.drop_column("restore_state")
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("move_after_seconds")
        batch.drop_column("on_node_loss")
    op.drop_index(op.f("ix_volume_copies_deployment_id"), table_name="volume_copies")
    op.drop_table("volume_copies")
