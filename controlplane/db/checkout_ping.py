"""A pooled PostgreSQL connection is checked on checkout with one round trip.

SQLAlchemy's `pool_pre_ping` checks every checkout; with asyncpg its ping is three
round trips (BEGIN, an empty statement, ROLLBACK: the transaction is there for
pgbouncer's transaction mode), more than many of the control plane's transactions
themselves take. :func:`ping_on_checkout` keeps the guarantee (a connection that the
server cut while it sat in the pool — a restart, a failover, an idle timeout — is
replaced before anyone uses it) with one round trip: `SELECT 1` on its own (simple
protocol), which every PostgreSQL and pgbouncer mode answers (asyncpg fails on an
empty statement's missing status). Skipping the check for connections used moments
ago was tried: the first statement after a failover then failed once per pooled
connection.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.util import await_

_NEW = "encedeus_new_connection"


def ping_on_checkout(engine: AsyncEngine) -> None:
    """On checkout from `engine`'s pool (asyncpg), check the connection with `SELECT
    1`; one that fails is replaced by a new connection. A connection just
    opened goes out unchecked. Use instead of `pool_pre_ping`."""

    def opened(_dbapi: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_NEW] = True

    def checked_out(
        _dbapi: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        if record.info.pop(_NEW, False):
            return
        driver = record.driver_connection
        try:
            if driver is None or driver.is_closed():
                raise ConnectionError("closed")
            await_(driver.execute("SELECT 1"))
        except Exception as exc:
            # The pool discards the connection and checks out a new one.
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc

    event.listen(engine.sync_engine, "connect", opened)
    event.listen(engine.sync_engine, "checkout", checked_out)
