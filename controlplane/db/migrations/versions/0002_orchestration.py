"""orchestration: nodes, deployments, replicas

Revision ID: 0002_orchestration
Revises: 0001_accounts
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0002_orchestration"
down_revision: str | None = "0001_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _nodes() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.Column("join_token_hash", sa.String(64), nullable=True),
        sa.Column("secret", sa.String(128), nullable=True),
        sa.Column("grpc_address", sa.String(255), nullable=False),
        sa.Column("http_address", sa.String(255), nullable=False),
        sa.Column("sftp_address", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("host_stats", sa.JSON(), nullable=False),
        sa.Column("port_range_start", sa.Integer(), nullable=False),
        sa.Column("port_range_end", sa.Integer(), nullable=False),
        sa.Column("cpu_millis", sa.Integer(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("enrolled_at", UtcDateTime(), nullable=True),
        sa.Column("last_seen", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nodes"),
    )
    op.create_index("ix_nodes_join_token_hash", "nodes", ["join_token_hash"], unique=True)
    op.create_index("ix_nodes_name", "nodes", ["name"], unique=True)


def _deployments() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("app_name", sa.String(63), nullable=False),
        sa.Column("image", sa.String(255), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("ports", sa.JSON(), nullable=False),
        sa.Column("env_vars", sa.JSON(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("cpu", sa.String(16), nullable=False),
        sa.Column("memory", sa.String(16), nullable=False),
        sa.Column("cpu_millis", sa.Integer(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("health_check", sa.JSON(), nullable=True),
        sa.Column("restart_policy", sa.String(16), nullable=False),
        sa.Column("stop_command", sa.String(255), nullable=False),
        sa.Column("stop_signal", sa.String(16), nullable=False),
        sa.Column("stop_timeout", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("constraints", sa.JSON(), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("run_since", UtcDateTime(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_message", sa.String(1000), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("deployed_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_deployments_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deployments"),
        sa.UniqueConstraint("user_id", "app_name", name="uq_deployments_user_id_app_name"),
    )
    op.create_index("ix_deployments_status", "deployments", ["status"])
    op.create_index("ix_deployments_user_id", "deployments", ["user_id"])


def _replicas() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=True),
        sa.Column("host_ports", sa.JSON(), nullable=False),
        sa.Column("restart_count", sa.Integer(), nullable=False),
        sa.Column("crash_streak", sa.Integer(), nullable=False),
        sa.Column("handled_exit_ms", sa.BigInteger(), nullable=False),
        sa.Column("backoff_until", UtcDateTime(), nullable=True),
        sa.Column("start_issued_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name="fk_replicas_deployment_id_deployments",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name="fk_replicas_node_id_nodes", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_replicas"),
        sa.UniqueConstraint("deployment_id", "ordinal", name="uq_replicas_deployment_id_ordinal"),
    )
    op.create_index("ix_replicas_deployment_id", "replicas", ["deployment_id"])
    op.create_index("ix_replicas_node_id", "replicas", ["node_id"])


def upgrade() -> None:
    _nodes()
    _deployments()
    _replicas()


def downgrade() -> None:
    op.drop_table("replicas")
    op.drop_table("deployments")
    op.drop_table("nodes")
