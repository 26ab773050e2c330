"""Migrations that change existing rows: run from the revision before them on both
engines, with rows in place, and nothing is lost."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from alembic import command
from sqlalchemy import Column, MetaData, Table, inspect, select
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel, col

from controlplane.db.engine import create_engine, dispose_engine
from controlplane.db.migrate import alembic_config, upgrade_database
from controlplane.db.tables import Deployment, User
from controlplane.db.types import utcnow


def _back_to(conn: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")  # the fixture may have migrated already
    command.downgrade(config, revision)


def _add_duplicate_app_names(conn: Connection) -> list[uuid.UUID]:
    """Three accounts each with an app `shop` (created in this order) and one with
    `shop-` plus the first 8 hex digits of the second one's id, taken already."""
    now = utcnow()
    users = [User(username=f"u{n}", email=f"u{n}@example.com", password_hash="x") for n in range(4)]
    shops = [
        Deployment(
            user_id=users[n].id, app_name="shop", image="x", created_at=now + timedelta(seconds=n)
        )
        for n in range(3)
    ]
    squatter = Deployment(user_id=users[3].id, app_name=f"shop-{shops[1].id.hex[:8]}", image="x")
    ids = [shop.id for shop in shops]
    _insert_as_of_now(conn, users)
    _insert_as_of_now(conn, [*shops, squatter])
    return ids


def _insert_as_of_now(conn: Connection, rows: Sequence[SQLModel]) -> None:
    """Insert model `rows` with only the columns their table has at the database's
    revision (today's model may have columns that later migrations add)."""
    model = type(rows[0]).__table__  # type: ignore[attr-defined]
    present = {c["name"] for c in inspect(conn).get_columns(model.name)}
    columns = [c for c in model.columns if c.name in present]
    # A table of those columns alone: the model's own would add its later columns'
    # defaults to the INSERT.
    then = Table(model.name, MetaData(), *(Column(c.name, c.type) for c in columns))
    values = [{c.name: getattr(row, c.key) for c in columns} for row in rows]
    conn.execute(then.insert().values(values))


def _app_names(conn: Connection) -> dict[uuid.UUID, str]:
    rows = conn.execute(select(col(Deployment.id), col(Deployment.app_name)))
    return {row.id: row.app_name for row in rows}


async def test_global_app_names_keep_the_oldest_and_rename_later_duplicates(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_back_to, "0014_cluster")
            first, second, third = await conn.run_sync(_add_duplicate_app_names)
    finally:
        await dispose_engine(engine)
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(_app_names)
    finally:
        await dispose_engine(engine)
    assert len(names) == 4
    assert len(set(names.values())) == 4  # every row kept, every name unique
    assert names[first] == "shop"
    assert names[second] == f"shop-{second.hex[:9]}"  # the 8-digit name was taken
    assert names[third] == f"shop-{third.hex[:8]}"
