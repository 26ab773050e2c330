"""task input files in chunks: task_file_chunks holds their bytes (streamed in and out,
never a whole file in memory), task_files loses `content` and gains `sha256` and
`created_at`; `size` becomes 64-bit and `task_id` nullable (a file received before its
task exists is staged)

Existing files keep their bytes: each becomes one chunk, with its digest.

Revision ID: 0020_task_file_chunks
Revises: 0019_volume_moves
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from controlplane.db.types import UtcDateTime

revision: str = "0020_task_file_chunks"
down_revision: str | None = "0019_volume_moves"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

files = sa.table(
    "task_files",
    sa.column("id", sa.Uuid()),
    sa.column("content", sa.LargeBinary()),
    sa.column("sha256", sa.String()),
    sa.column("created_at", UtcDateTime()),
)
chunks = sa.table(
    "task_file_chunks",
    sa.column("file_id", sa.Uuid()),
    sa.column("seq", sa.Integer()),
    sa.column("data", sa.LargeBinary()),
)


def _move_contents_to_chunks() -> None:
    bind = op.get_bind()
    ids = bind.execute(sa.select(files.c.id)).scalars().all()
    for file_id in ids:  # one at a time: each was at most a few MiB
        content = bind.execute(sa.select(files.c.content).where(files.c.id == file_id)).scalar()
        data = bytes(content or b"")
        if data:
            bind.execute(chunks.insert().values(file_id=file_id, seq=0, data=data))
        digest = hashlib.sha256(data).hexdigest()
        bind.execute(files.update().where(files.c.id == file_id).values(sha256=digest))


def upgrade() -> None:
    op.add_column(
        "task_files", sa.Column("sha256", sa.String(64), nullable=False, server_default="")
    )
    op.add_column("task_files", sa.Column("created_at", UtcDateTime(), nullable=True))
    op.execute(files.update().values(created_at=datetime.now(UTC)))
    # Before task_file_chunks exists: on SQLite the batch copies and drops task_files,
    # which must not cascade into chunks yet.
    with op.batch_alter_table("task_files") as batch:
        batch.alter_column("created_at", existing_type=UtcDateTime(), nullable=False)
        batch.alter_column("task_id", existing_type=sa.Uuid(), nullable=True)
        batch.alter_column("size", existing_type=sa.Integer(), type_=sa.BigInteger())
    op.create_table(
        "task_file_chunks",
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["task_files.id"],
            name=op.f("fk_task_file_chunks_file_id_task_files"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("file_id", "seq", name=op.f("pk_task_file_chunks")),
    )
    _move_contents_to_chunks()
    op.drop_column("task_files", "content")  # native DROP COLUMN (SQLite >= 3.35)


def downgrade() -> None:
    op.add_column("task_files", sa.Column("content", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    for file_id in bind.execute(sa.select(files.c.id)).scalars().all():
        parts = bind.execute(
            sa.select(chunks.c.data).where(chunks.c.file_id == file_id).order_by(chunks.c.seq)
        ).scalars()
        content = b"".join(bytes(p) for p in parts)
        bind.execute(files.update().where(files.c.id == file_id).values(content=content))
    op.drop_table("task_file_chunks")
    op.execute(sa.text("DELETE FROM task_files WHERE task_id IS NULL"))
    with op.batch_alter_table("task_files") as batch:
        batch.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("size", existing_type=sa.BigInteger(), type_=sa.Integer())
        batch.alter_column("task_id", existing_type=sa.Uuid(), nullable=False)
        batch.drop_column("created_at")
        batch.drop_column("sha256")
