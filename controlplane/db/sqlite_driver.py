"""aiosqlite with one thread hop per statement, for SQLAlchemy's aiosqlite dialect.

aiosqlite runs every call on the connection's worker thread and hands the result
back to the event loop. SQLAlchemy's adapter makes four such calls per statement
(open a cursor, execute, fetch, close) and one per COMMIT or ROLLBACK, even when no
transaction is open. Each hop waits for the OS to run the worker thread and then
for the event loop to come back to the caller: on a busy machine, milliseconds.
On SQLite the process's write transactions take turns (`Database.transaction`), so
every hop inside one is time no other writer can use.

:class:`OneHopConnection` keeps aiosqlite's threading and API but answers
`cursor()` with a cursor whose `execute` runs the statement, fetches every row and
closes the sqlite3 cursor in one call on the worker thread; `commit()` and
`rollback()` cost nothing when no transaction is open (the pool's reset on every
checkin). Rows are fetched eagerly, as the adapter does for ordinary cursors;
`fetchone`/`fetchmany` serve them from memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import aiosqlite

_Outcome = tuple[Any, int, int | None, list[Any]]


def _run(connection: sqlite3.Connection, sql: str, parameters: Any, many: bool = False) -> _Outcome:
    """Execute, fetch and close in one go: (description, rowcount, lastrowid, rows)."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        elif parameters is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor:
    """The cursor SQLAlchemy's adapter drives: `execute` is the only call that hops."""

    arraysize = 1

    def __init__(self, connection: OneHopConnection) -> None:
        self._connection = connection
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[Any] = []

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = None) -> OneHopCursor:
        """Run one statement; its rows wait in memory for the fetch calls."""
        outcome = await self._connection.run_on_worker(_run, sql, parameters)
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneHopCursor:
        """Run one statement for each set of parameters."""
        outcome = await self._connection.run_on_worker(_run, sql, list(parameters), True)
        self.description, self.rowcount, self.lastrowid, self._rows = outcome
        return self

    async def fetchall(self) -> list[Any]:
        """Every row not fetched yet."""
        rows, self._rows = self._rows, []
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        """Up to `size` (default `arraysize`) rows not fetched yet."""
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchone(self) -> Any:
        """The next row, or None."""
        return self._rows.pop(0) if self._rows else None

    async def close(self) -> None:
        """Nothing to release: the sqlite3 cursor was closed on the worker thread."""
        self._rows = []


class OneHopConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements take one hop each (see module doc).

    COMMIT and ROLLBACK are skipped only when no transaction is open *and* no
    statement is still queued or running on the worker thread: a statement whose
    caller was cancelled still runs there, and may open a transaction that the
    pool's rollback must then end.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        # Each written by one thread only (submitted: the loop's, done: the worker's).
        self._submitted = 0
        self._done = 0

    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        """A cursor; opening it costs no hop."""
        return OneHopCursor(self)

    async def run_on_worker(
        self, function: Callable[..., _Outcome], sql: str, parameters: Any, *more: Any
    ) -> _Outcome:
        """`function(sqlite3 connection, sql, parameters, *more)` on the worker thread."""
        self._submitted += 1
        return await self._execute(self._counted, function, sql, parameters, *more)  # type: ignore[no-untyped-call,no-any-return]

    def _counted(
        self, function: Callable[..., _Outcome], sql: str, parameters: Any, *more: Any
    ) -> _Outcome:
        try:
            return function(self._conn, sql, parameters, *more)
        finally:
            self._done += 1

    def _idle(self) -> bool:
        return self._done == self._submitted and not self._conn.in_transaction

    async def commit(self) -> None:
        """Commit the open transaction, if any (none: no hop)."""
        if not self._idle():
            await super().commit()

    async def rollback(self) -> None:
        """Roll back the open transaction, if any (none: no hop)."""
        if not self._idle():
            await super().rollback()


def one_hop_connect(database: str, **options: Any) -> OneHopConnection:
    """Like `aiosqlite.connect(database, **options)`, with one hop per statement."""

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **options)
        return connection

    return OneHopConnection(connector)
