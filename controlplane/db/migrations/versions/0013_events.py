"""events: the durable event log, webhook cursors and deliveries, the mail outbox

Revision ID: 0013_events
Revises: 0012_slot_volumes
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0013_events"
down_revision: str | None = "0012_slot_volumes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURSOR = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", CURSOR, autoincrement=True, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=True),
        sa.Column("deployment_id", sa.String(36), nullable=True),
        sa.Column("task_id", sa.String(36), nullable=True),
        sa.Column("node_id", sa.String(36), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_owner_id", "events", ["owner_id"])
    op.create_table(
        "webhook_cursors",
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("cursor", CURSOR, nullable=False),
        sa.PrimaryKeyConstraint("endpoint", name="pk_webhook_cursors"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", CURSOR, autoincrement=True, nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("event_id", CURSOR, nullable=False),
        sa.Column("event_key", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("first_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_deliveries_endpoint", "webhook_deliveries", ["endpoint"])
    op.create_table(
        "mail_outbox",
        sa.Column("id", CURSOR, autoincrement=True, nullable=False),
        sa.Column("to", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mail_outbox"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mail_outbox_status", "mail_outbox", ["status"])


def downgrade() -> None:
    op.drop_table("mail_outbox")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_cursors")
    op.drop_table("events")
