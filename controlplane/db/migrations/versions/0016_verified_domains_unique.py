"""verified custom domains unique: a partial unique index on custom_domains.domain
where state = 'verified', so two verifications racing cannot both succeed

Should an installation already hold a name verified by several deployments, the
oldest verification keeps it and the later ones go back to pending_verification
(with last_error saying why; nothing is deleted) before the index is made.

Revision ID: 0016_verified_domains_unique
Revises: 0015_global_app_names
Create Date: 2026-12-02
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_verified_domains_unique"
down_revision: str | None = "0015_global_app_names"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
VERIFIED_ONLY = sa.text("state = 'verified'")

domains = sa.table(
    "custom_domains",
    sa.column("id", sa.Uuid()),
    sa.column("domain", sa.String()),
    sa.column("state", sa.String()),
    sa.column("last_error", sa.String()),
    sa.column("verified_at", sa.DateTime()),
)


def _unverify_later_duplicates() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(domains.c.id, domains.c.domain)
        .where(domains.c.state == "verified")
        .order_by(domains.c.domain, domains.c.verified_at, domains.c.id)
    ).all()
    seen: set[str] = set()
    for row in rows:
        if row.domain not in seen:
            seen.add(row.domain)
            continue
        bind.execute(
            domains.update()
            .where(domains.c.id == row.id)
            .values(
                state="pending_verification",
                verified_at=None,
                last_error="verified by another deployment earlier",
            )
        )
        log.warning(
            "custom domain %r was verified twice: claim %s is pending again", row.domain, row.id
        )


def upgrade() -> None:
    _unverify_later_duplicates()
    op.create_index(
        "ux_custom_domains_verified_domain",
        "custom_domains",
        ["domain"],
        unique=True,
        sqlite_where=VERIFIED_ONLY,
        postgresql_where=VERIFIED_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ux_custom_domains_verified_domain", table_name="custom_domains")
