"""The async database engine: embedded SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from controlplane.db.checkout_ping import ping_on_checkout
from controlplane.db.sqlite_driver import one_hop_connect
from controlplane.db.writer_turns import WriterTurns

log = get_logger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_POOL_SIZE = 16
# How long dispose_engine() waits for SQLite worker threads to finish their queues.
WORKER_STOP_SECONDS = SQLITE_BUSY_TIMEOUT_MS / 1000 + 5

# aiosqlite runs each connection on a worker thread of its own. A connection whose
# opening or query was cancelled is stopped without waiting, so its thread can still
# be working after the pool is disposed; dispose_engine() waits for these threads, or
# they would report to an event loop that may be closed by then.
_workers: weakref.WeakKeyDictionary[AsyncEngine, weakref.WeakSet[threading.Thread]] = (
    weakref.WeakKeyDictionary()
)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL + NORMAL is durable across application crashes; only power loss can
        # drop the last transactions.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_engine(url: str, **kwargs: Any) -> AsyncEngine:
    workers: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    async def connect() -> aiosqlite.Connection:
        connection = one_hop_connect(*args, **options)
        # The attribute SQLAlchemy's own aiosqlite dialect uses (aiosqlite >= 0.22);
        # daemon, as there, so a stuck query never holds up interpreter exit.
        worker = connection._thread
        worker.daemon = True
        workers.add(worker)
        return await connection

    # Enough pooled connections for the readers of a busy process: a connection
    # beyond the pool is opened (a thread, a file, the pragmas) and closed per use.
    pooling = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_POOL_SIZE}
    engine = create_async_engine(url, async_creator=connect, **{**pooling, **kwargs})
    # The arguments SQLAlchemy itself would pass to the driver for this URL.
    args, options = engine.dialect.create_connect_args(engine.url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    _workers[engine] = workers
    return engine


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for `url` (sqlite+aiosqlite:///file or postgresql+asyncpg://...);
    close it with :func:`dispose_engine`."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **kwargs)
    if url.startswith("postgresql") and "+asyncpg" not in url:
        raise ValueError("PostgreSQL URLs must use the asyncpg driver: postgresql+asyncpg://")
    engine = create_async_engine(url, **kwargs)
    ping_on_checkout(engine)  # pool_pre_ping: 3 round trips per checkout, this 1
    return engine


async def dispose_engine(engine: AsyncEngine) -> None:
    """Close every pooled connection and wait until the driver has stopped working."""
    await engine.dispose()
    running = [w for w in _workers.get(engine, ()) if w.is_alive()]
    if running:
        left = await asyncio.to_thread(_join, running, WORKER_STOP_SECONDS)
        if left:
            log.warning("sqlite_workers_still_running", count=left)


def _join(threads: list[threading.Thread], timeout: float) -> int:
    """Join `threads` within `timeout` seconds in all; the number still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(thread.is_alive() for thread in threads)


class _Turn:
    """One transaction's writer turn; `active` until that transaction ends."""

    __slots__ = ("active", "database")

    def __init__(self, database: int) -> None:
        self.database = database
        self.active = True


# The writer turns the current task (or the task that started it) holds. A task
# started inside a transaction inherits them, but only while that transaction lasts.
_turns_held: contextvars.ContextVar[tuple[_Turn, ...]] = contextvars.ContextVar(
    "turns_held", default=()
)


# Whether the current task's transactions go ahead of the queue (writes_go_first).
_first_in_line: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "first_in_line", default=False
)


@contextmanager
def writes_go_first() -> Iterator[None]:
    """Inside the block, the current task's SQLite transactions (and those of tasks
    it starts) wait only for the turn in progress and for other such transactions,
    not for the ordinary queue: for code that holds a lock others wait on (the
    reconciler's pause around a deletion), so that they wait for one transaction,
    not for every writer queued meanwhile. The reconciler's own pass stays in the
    queue: waiting there, it records the statuses of many deployments at once."""
    token = _first_in_line.set(True)
    try:
        yield
    finally:
        _first_in_line.reset(token)


class Database:
    """The control plane's database: one engine, sessions on demand.

    `session()` opens an AsyncSession; `transaction()` opens one inside a transaction
    that commits on success and rolls back on error. Objects stay usable after commit.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        # SQLite has one writer. Left to itself, each waiting connection polls the
        # lock with growing sleeps (busy_timeout): under many concurrent writes some
        # wait seconds, and past the timeout fail with "database is locked". This
        # process's transactions take turns here instead, first come first served.
        self._writer = WriterTurns() if engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def session(self) -> AsyncSession:
        """A new session; use as `async with db.session() as session:`."""
        return self._sessions()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits when the block succeeds. On SQLite
        the process's transactions run one at a time, in arrival order (a transaction
        opened inside another, in the same task or one it started, does not wait for
        its turn), except that those opened inside :func:`writes_go_first` go ahead
        of the others."""
        held = _turns_held.get()
        if self._writer is None or any(t.active and t.database == id(self) for t in held):
            async with self._session_in_transaction() as session:
                yield session
            return
        await self._writer.acquire(first=_first_in_line.get())
        turn = _Turn(id(self))
        token = _turns_held.set((*held, turn))
        try:
            async with self._session_in_transaction() as session:
                yield session
        finally:
            turn.active = False
            _turns_held.reset(token)
            self._writer.release()

    @asynccontextmanager
    async def _session_in_transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        """Close every pooled connection and wait until the driver has stopped."""
        await dispose_engine(self.engine)
