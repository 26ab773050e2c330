"""Alembic on both databases: upgrade, tables == migrations, refusal of newer schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import controlplane.db.tables  # noqa: F401  (all tables on the metadata)
from controlplane.db.engine import create_engine, dispose_engine
from controlplane.db.migrate import (
    UnknownSchemaError,
    current_revision,
    head_revision,
    upgrade_database,
)
from tests.controlplane.conftest import ConfigFactory, start_client


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_upgrade_reaches_head_and_matches_the_tables(database_url: str) -> None:
    assert await upgrade_database(database_url) == head_revision()
    assert await current_revision(database_url) == head_revision()
    # Running it again is a no-op.
    assert await upgrade_database(database_url) == head_revision()
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await dispose_engine(engine)


async def _stamp(database_url: str, revision: str) -> None:
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE alembic_version SET version_num = :rev"), {"rev": revision}
            )
    finally:
        await dispose_engine(engine)


async def test_a_database_from_a_newer_release_is_refused(database_url: str) -> None:
    await _stamp(database_url, "9999_from_the_future")
    with pytest.raises(UnknownSchemaError, match="9999_from_the_future"):
        await upgrade_database(database_url)


async def test_the_app_refuses_to_start_on_an_unknown_schema(
    make_config: ConfigFactory, database_url: str
) -> None:
    await _stamp(database_url, "9999_from_the_future")
    with pytest.raises(UnknownSchemaError):
        await start_client(make_config())


async def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with engine.connect() as conn:
            values = [
                (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            ]
    finally:
        await dispose_engine(engine)
    assert values == ["wal", 1, 5000]


def test_postgres_urls_must_use_asyncpg() -> None:
    with pytest.raises(ValueError, match="asyncpg"):
        create_engine("postgresql://u:p@127.0.0.1/db")
