"""Alembic, driven from code: upgrade at startup, refuse a schema newer than the code.

Migrations run in a worker thread on an engine of their own, so Alembic's file reads
and synchronous API never block the server's event loop.

New revision after changing tables (autogenerate against a scratch SQLite file):
    python -m controlplane.db.migrate revision "add nodes"
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import BigInteger, bindparam, func, select
from sqlalchemy.engine import Connection

from controlplane.db.engine import create_engine, dispose_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class UnknownSchemaError(RuntimeError):
    """The database carries a schema revision this code does not know (it is newer)."""


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


# pg_advisory_xact_lock key that serialises migrations of control planes starting at
# once on one PostgreSQL database ("migrate!").
MIGRATION_LOCK_KEY = 0x6D69677261746521


def _upgrade(conn: Connection, config: Config) -> str:
    if conn.dialect.name == "postgresql":
        # Held until this upgrade's transaction ends: a second control plane waits,
        # then finds the schema at head and has nothing to do.
        conn.execute(
            select(func.pg_advisory_xact_lock(bindparam("key", MIGRATION_LOCK_KEY, BigInteger)))
        )
    script = ScriptDirectory.from_config(config)
    known = {rev.revision for rev in script.walk_revisions()}
    current = _current(conn)
    if current is not None and current not in known:
        raise UnknownSchemaError(
            f"database schema revision {current!r} is unknown to this version of Encedeus "
            "(the database was migrated by a newer release); refusing to start"
        )
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
    revision = _current(conn)
    assert revision is not None
    return revision


async def _upgrade_async(url: str) -> str:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # SQLite's batch mode rebuilds a table to alter it (copy, drop, rename):
                # with foreign keys on, the drop cascades to every row that references
                # the table (a deployments rebuild deleted every replica). Off for the
                # migration (it only takes effect outside a transaction), checked after.
                await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await conn.commit()
            async with conn.begin():
                revision = await conn.run_sync(_upgrade, alembic_config())
                if sqlite:
                    broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
            return revision
    finally:
        await dispose_engine(engine)


def upgrade_database_blocking(url: str) -> str:
    """Upgrade the database at `url` to head and return its revision (blocking)."""
    return asyncio.run(_upgrade_async(url))


async def upgrade_database(url: str) -> str:
    """Upgrade to head off the event loop; raises UnknownSchemaError for newer schemas."""
    return await asyncio.to_thread(upgrade_database_blocking, url)


async def current_revision(url: str) -> str | None:
    """The revision stamped in the database at `url` (None when never migrated)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await dispose_engine(engine)


def _make_revision(message: str) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            url = f"sqlite+aiosqlite:///{scratch}/scratch.db"
            await _upgrade_async(url)
            engine = create_engine(url)
            config = alembic_config()

            def generate(conn: Connection) -> None:
                config.attributes["connection"] = conn
                command.revision(config, message=message, autogenerate=True)

            async with engine.begin() as conn:
                await conn.run_sync(generate)
            await dispose_engine(engine)

    asyncio.run(run())


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit("usage: python -m controlplane.db.migrate revision MESSAGE")
    _make_revision(sys.argv[2])
