"""A pooled PostgreSQL connection is checked with a ping only after it sat idle.

SQLAlchemy's `pool_pre_ping` pings on every checkout; with asyncpg a ping is three
round trips (BEGIN, an empty statement, ROLLBACK), more than most of the control
plane's transactions themselves take. A connection returned to the pool moments ago
was working moments ago: :func:`ping_when_idle` pings only connections that have sat
in the pool longer than `idle_seconds`, the ones that a server restart, a failover
or an idle timeout may have cut. A connection cut within that window fails its next
statement once; SQLAlchemy then discards it (it is invalidated as a disconnect) and
the next checkout gets another.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED_AT = "encedeus_returned_at"


def ping_when_idle(
    engine: AsyncEngine,
    idle_seconds: float = PING_AFTER_IDLE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """On checkout from `engine`'s pool, ping a connection that was returned more than
    `idle_seconds` ago; one that fails is replaced by a new connection. Connections
    just opened and those used within `idle_seconds` go out unchecked. Use instead of
    `pool_pre_ping`."""
    dialect = engine.sync_engine.dialect

    def returned(_dbapi: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = clock()

    def checked_out(
        dbapi: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        # `info` lives as long as the DBAPI connection: empty for a new one.
        at = record.info.get(_RETURNED_AT)
        if at is None or clock() - at <= idle_seconds:
            return
        try:
            dialect.do_ping(dbapi)
        except Exception as exc:
            # The pool discards the connection and checks out a new one.
            raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc

    event.listen(engine.sync_engine, "checkin", returned)
    event.listen(engine.sync_engine, "checkout", checked_out)
