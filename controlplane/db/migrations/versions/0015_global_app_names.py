"""global app names: deployments.app_name unique across the installation (it is the
app's hostname label `<app_name>.<suffix>`), no longer only per account

Existing duplicates (the same name in several accounts) are kept, not dropped: the
oldest deployment of a name keeps it (it is the one the ingress routed the hostname
to), each later one is renamed `<name>-<first 8 hex digits of its id>` (shortened to
fit 63 characters, longer id prefixes if that name is taken too) and the rename is
logged with both names and the deployment id.

Revision ID: 0015_global_app_names
Revises: 0014_cluster
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_global_app_names"
down_revision: str | None = "0014_cluster"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
MAX_APP_NAME = 63

deployments = sa.table(
    "deployments",
    sa.column("id", sa.Uuid()),
    sa.column("app_name", sa.String()),
    sa.column("created_at", sa.DateTime()),
)


def _free_name(name: str, deployment_id: uuid.UUID, taken: set[str]) -> str:
    """`<name>-<id prefix>` within 63 characters, not in `taken`."""
    digits = deployment_id.hex
    for length in range(8, len(digits) + 1):
        suffix = "-" + digits[:length]
        candidate = name[: MAX_APP_NAME - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"no free name for deployment {deployment_id}")  # 32 hex digits


def _rename_later_duplicates() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(deployments.c.id, deployments.c.app_name).order_by(
            deployments.c.app_name, deployments.c.created_at, deployments.c.id
        )
    ).all()
    taken = {row.app_name for row in rows}
    seen: set[str] = set()
    for row in rows:
        if row.app_name not in seen:
            seen.add(row.app_name)
            continue
        new_name = _free_name(row.app_name, row.id, taken)
        taken.add(new_name)
        bind.execute(
            deployments.update().where(deployments.c.id == row.id).values(app_name=new_name)
        )
        log.warning(
            "app name %r is held by an older deployment: deployment %s renamed to %r",
            row.app_name,
            row.id,
            new_name,
        )


def upgrade() -> None:
    _rename_later_duplicates()
    # Only an index is added: the per-account unique constraint stays (implied by this
    # one), since dropping it would make SQLite rebuild `deployments`, and that
    # rebuild's DROP TABLE would cascade to the replicas of every deployment.
    op.create_index("ux_deployments_app_name", "deployments", ["app_name"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_deployments_app_name", table_name="deployments")
