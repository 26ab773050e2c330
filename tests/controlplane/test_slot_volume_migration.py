"""Migration 0009: every existing replica's id becomes its slot's volume id, so no data
directory is renamed and no SFTP login changes (both databases)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from controlplane.db.engine import create_engine, dispose_engine
from controlplane.db.migrate import alembic_config, upgrade_database

BEFORE = "0011_task_queue"


def _filler(column: sa.Column[Any]) -> object:
    """A value for a required column of a table as it was at `BEFORE`."""
    kind = column.type
    if isinstance(kind, sa.Uuid):
        return uuid.uuid4()
    if isinstance(kind, sa.Boolean):
        return False
    if isinstance(kind, sa.Integer | sa.Numeric):
        return 0
    if isinstance(kind, sa.JSON):
        return {}
    if isinstance(kind, sa.DateTime):
        return datetime.now(UTC)
    if column.name == "created_at" or "TIME" in str(kind).upper():
        return datetime.now(UTC)
    return f"x{uuid.uuid4().hex[:8]}"


def _insert(conn: Connection, table: sa.Table, **given: object) -> None:
    row = dict(given)
    for column in table.columns:
        if column.name not in row and not column.nullable and column.server_default is None:
            row[column.name] = _filler(column)
    if conn.dialect.name == "sqlite":  # reflected as CHAR(32): sa.Uuid's hex form
        row = {k: v.hex if isinstance(v, uuid.UUID) else v for k, v in row.items()}
    conn.execute(table.insert().values(**row))


def _old_replica(conn: Connection) -> uuid.UUID:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")  # the fixture may have migrated already
    command.downgrade(config, BEFORE)
    meta = sa.MetaData()
    meta.reflect(conn, only=["users", "deployments", "replicas"])
    user_id, deployment_id, replica_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _insert(conn, meta.tables["users"], id=user_id)
    _insert(conn, meta.tables["deployments"], id=deployment_id, user_id=user_id)
    _insert(conn, meta.tables["replicas"], id=replica_id, deployment_id=deployment_id, ordinal=0)
    return replica_id


async def test_existing_replicas_keep_their_id_as_the_volume_id(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            replica_id = await conn.run_sync(_old_replica)
    finally:
        await dispose_engine(engine)
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT id, volume_id FROM replicas"))).all()
    finally:
        await dispose_engine(engine)
    assert [(str(uuid.UUID(str(a))), str(uuid.UUID(str(b)))) for a, b in rows] == [
        (str(replica_id), str(replica_id))
    ]
