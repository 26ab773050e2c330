"""One server per embedded SQLite database.

SQLite serves one control plane process: a second server on the same file would run a
second reconciler against the same agents. The server holds an exclusive `fcntl` lock
on ``<database>.serve.lock`` while it serves; a second one is refused with a clear
message. One-shot commands (``encedeus user create``) do not take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DatabaseInUse(RuntimeError):
    """Another control plane server holds the database."""


class ServeLock:
    """An exclusive, non-blocking lock on a file next to the database, held until
    :meth:`release` (or the process ends: the kernel drops it then)."""

    def __init__(self, database_file: Path) -> None:
        self.path = database_file.with_name(database_file.name + ".serve.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DatabaseInUse. Blocking file I/O (tiny)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatabaseInUse(
                f"another control plane is already serving the SQLite database next to"
                f" {self.path}; the embedded database serves one process only (use"
                " PostgreSQL, DATABASE_URL=postgresql://..., to run several)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def sqlite_file(database_url: str) -> Path | None:
    """The file of a `sqlite+aiosqlite:///path` URL (None for other databases)."""
    prefix = "sqlite+aiosqlite:///"
    if not database_url.startswith(prefix):
        return None
    return Path(database_url[len(prefix) :])
