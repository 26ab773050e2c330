"""port protocols: deployments.port_protocols, "tcp", "udp" or "tcp+udp" for each of
`ports` (empty: all TCP, as every deployment was before)

Deployments made from a template kept their ports' protocols in the template record
(`port_protocols`, a list of protocol lists); they are copied into the new column.

Revision ID: 0017_port_protocols
Revises: 0016_verified_domains_unique
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0017_port_protocols"
down_revision: str | None = "0016_verified_domains_unique"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

deployments = sa.table(
    "deployments",
    sa.column("id", sa.Uuid()),
    sa.column("template", sa.JSON()),
    sa.column("port_protocols", sa.JSON()),
)


def _from_template(record: Any) -> list[str]:
    wanted = record.get("port_protocols") if isinstance(record, dict) else None
    return ["+".join(sorted(set(p), key=("tcp", "udp").index)) for p in wanted or []]


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(
            sa.Column("port_protocols", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(deployments.c.id, deployments.c.template).where(
            deployments.c.template.is_not(None)
        )
    ).all()
    for row in rows:
        if protocols := _from_template(row.template):
            bind.execute(
                deployments.update()
                .where(deployments.c.id == row.id)
                .values(port_protocols=protocols)
            )


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("port_protocols")
