"""tasks: the task queue (when a task was queued and why it waits) and retries

Revision ID: 0011_task_queue
Revises: 0010_custom_domains
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0011_task_queue"
down_revision: str | None = "0010_custom_domains"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("queued_at", UtcDateTime(), nullable=True))
    op.add_column(
        "tasks", sa.Column("queue_reason", sa.String(500), nullable=False, server_default="")
    )
    op.add_column("tasks", sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("tasks", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_tasks_queued_at", "tasks", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_queued_at", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("attempts")
        batch.drop_column("retries")
        batch.drop_column("queue_reason")
        batch.drop_column("queued_at")
