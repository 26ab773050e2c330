"""The disk limit of one server directory, shared by every SFTP session of that server."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Awaitable, Callable


class DiskQuota:
    """Bytes a server directory may hold (`limit_bytes`; 0 means no limit).

    Usage is measured with `measure` (blocking: it walks the directory, so `refresh`
    runs it through the given thread runner) when older than `max_age` seconds; between
    measurements each write charges the bytes by which it grows a file. A write that
    would pass the limit raises OSError(EDQUOT), which SFTP reports as a quota error.
    Lives on the event loop: not thread-safe, no locking needed.
    """

    def __init__(
        self,
        limit_bytes: int,
        measure: Callable[[], int],
        *,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit_bytes = limit_bytes
        self._measure = measure
        self._max_age = max_age
        self._clock = clock
        self._used: int | None = None
        self._measured_at = 0.0

    @property
    def used(self) -> int | None:
        """Last known usage in bytes (None before the first measurement)."""
        return self._used

    def stale(self) -> bool:
        return self._used is None or self._clock() - self._measured_at > self._max_age

    async def refresh(self, run: Callable[[Callable[[], int]], Awaitable[int]]) -> None:
        """Measure again through `run` (e.g. a thread-pool runner)."""
        self._measured_at = self._clock()
        self._used = await run(self._measure)

    def charge(self, growth: int) -> None:
        """Account `growth` bytes, or refuse them if they would pass the limit."""
        if growth <= 0 or not self.limit_bytes:
            return
        used = self._used or 0
        if used + growth > self.limit_bytes:
            raise OSError(errno.EDQUOT, "disk limit of this server reached")
        self._used = used + growth

    def release(self, freed: int) -> None:
        """Give back bytes a removal or truncation freed."""
        if self._used is not None and freed > 0:
            self._used = max(0, self._used - freed)


def usage_beneath(dir_fd: int) -> int:
    """Apparent bytes of every regular file beneath `dir_fd` (closed here); links are
    not followed. Blocking: run in a thread."""
    total = 0
    stack = [dir_fd]
    while stack:
        fd = stack.pop()
        try:
            with os.scandir(fd) as scan:
                for entry in scan:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                            stack.append(os.open(entry.name, flags, dir_fd=fd))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # changed under us; the next measurement catches it
        except OSError:
            continue  # a directory gone since it was listed
        finally:
            os.close(fd)
    return total
