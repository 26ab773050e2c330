"""Reads and writes of one open file, in a worker pool, without stalling the session.

asyncssh serves one SFTP request at a time per session, so every wait for a worker
thread is a gap in the stream. Sequential reads are therefore read ahead, and writes
are handed to the pool without waiting for them.

Each hop to the pool costs a thread wake-up, a wake-up of the event loop and GIL
hand-overs; on a download that cost more CPU than the reads themselves. So read-ahead
reads whole CHUNKs (several client requests' worth) per hop, and writes that continue
one another (an upload: OpenSSH sends 32 KiB each) are gathered into one pwritev of
up to CHUNK bytes per hop.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

CHUNK = 1024 * 1024  # bytes per pread in the pool: one thread hop serves several reads
# Chunks read ahead of the ones a sequential read is served from. A pread's worker
# needs the GIL to start and to hand its result back: while the event loop is busy
# (sealing and sending), each can wait for the interpreter's 5 ms switch interval.
# Two chunks (2 MiB, ~5 ms of a fast download) were often not enough: a download
# stalled every few MiB, 5-10 ms each, up to a quarter of its time. Four hide it.
READ_AHEAD = 4
WRITE_BEHIND = 16  # writes in flight per file


def _frozen(data: bytes | bytearray | memoryview) -> bytes | memoryview:
    """`data`, or a copy of it if it could change before it is written: bytes and
    views of bytes (an upload's data, a view into the request read) are kept as
    they are; any other buffer is copied."""
    if type(data) is bytes or (type(data) is memoryview and type(data.obj) is bytes):
        return data
    return bytes(data)


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of `data` at `offset` (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def pwritev_all(fd: int, pieces: list[bytes | memoryview], offset: int) -> None:
    """Write the concatenation of `pieces` at `offset`, in as few syscalls as the
    kernel allows (pwritev may write less than asked)."""
    views = [memoryview(piece) for piece in pieces]
    while views:
        written = os.pwritev(fd, views, offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            del views[0]
        if views and written:
            views[0] = views[0][written:]


class OpenFile:
    """A regular file a client opened; `fd` is owned and closed by `close`.

    Reads: a read that continues where the previous one ended is served from CHUNK-sized
    blocks read in the pool, READ_AHEAD of them ahead of the read (only on files opened
    read-only, so no read-ahead is ever stale against this session's own writes); any
    other read drops the read-ahead and reads just what it asks for. Writes: a write
    that continues the one before joins it until CHUNK bytes are gathered (not with
    O_APPEND), then they go to the pool as one; up to WRITE_BEHIND run at once (one at
    a time with O_APPEND); a write's error is raised by a later `write`, `settle`,
    `close` or read. A read of a writable file waits for every write before it. `close` waits for
    all work in flight before closing the fd, so the fd number is never reused under a
    pread or pwrite still running.
    """

    def __init__(
        self, fd: int, size: int, writable: bool, executor: Executor, *, append: bool = False
    ) -> None:
        self.fd = fd
        self.size = size  # what this session knows; grows with its writes
        self.writable = writable
        self.append = append  # O_APPEND: every write lands at the end, not at its offset
        # O_APPEND writes land in completion order, whatever their offsets: one at a time.
        self._write_depth = 1 if append else WRITE_BEHIND
        self._executor = executor
        self._ahead: dict[int, Future[bytes]] = {}  # chunk index → its pread
        self._next_read = 0  # where a sequential read continues
        self._stray: list[Future[bytes]] = []  # dropped read-aheads still running
        # Writes in the pool, oldest first, with the byte range each covers.
        self._writes: deque[tuple[Future[None], int, int]] = deque()
        self._gathered: list[bytes | memoryview] = []  # contiguous writes not in the pool yet
        self._gathered_at = 0  # their offset
        self._gathered_len = 0
        self._closed = False

    async def read(self, offset: int, size: int) -> bytes:
        data = await self.read_view(offset, size)
        return data if type(data) is bytes else bytes(data)

    async def read_view(self, offset: int, size: int) -> bytes | memoryview:
        """`read`, but a read within one read-ahead chunk is a read-only view into it.

        Saves copying the bytes out of the chunk when the caller copies them anyway
        (into the SSH packet being sealed).
        """
        if self.writable or offset != self._next_read or size <= 0:
            if self.writable:
                await self.settle()  # the session reads its own writes, never stale bytes
            self._drop_read_ahead()
            future = self._executor.submit(os.pread, self.fd, size, offset)
            data: bytes | memoryview = await asyncio.wrap_future(future)
        else:
            data = await self._read_chunks(offset, size)
        self._next_read = offset + len(data)
        return data

    async def _read_chunks(self, offset: int, size: int) -> bytes | memoryview:
        first, last = offset // CHUNK, (offset + size - 1) // CHUNK
        self._drop_read_ahead(below=first)
        for index in range(first, last + 1 + READ_AHEAD):
            if index not in self._ahead:
                self._ahead[index] = self._executor.submit(os.pread, self.fd, CHUNK, index * CHUNK)
        pieces = []
        for index in range(first, last + 1):
            future = self._ahead[index]
            chunk = future.result() if future.done() else await asyncio.wrap_future(future)
            base = index * CHUNK
            pieces.append(memoryview(chunk)[max(offset - base, 0) : offset + size - base])
            if len(chunk) < CHUNK:
                self._drop_read_ahead()  # end of file: nothing to read ahead
                break
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        while self._writes and self._writes[0][0].done():
            self._writes.popleft()[0].result()  # an earlier write's error surfaces here
        if self.append:
            await self._submit(pwrite_all, _frozen(data), offset, len(data))
            return
        if self._gathered and offset != self._gathered_at + self._gathered_len:
            await self._submit_gathered()
        if not self._gathered:
            self._gathered_at = offset
        self._gathered.append(_frozen(data))
        self._gathered_len += len(data)
        if self._gathered_len >= CHUNK:
            await self._submit_gathered()

    async def _submit_gathered(self) -> None:
        pieces, offset, size = self._gathered, self._gathered_at, self._gathered_len
        self._gathered, self._gathered_len = [], 0
        if len(pieces) == 1:
            await self._submit(pwrite_all, pieces[0], offset, size)
        else:
            await self._submit(pwritev_all, pieces, offset, size)

    async def _submit(
        self, write: Callable[[int, Any, int], None], data: Any, offset: int, size: int
    ) -> None:
        end = offset + size
        # Writes in the pool run in any order: one that overlaps a write still in flight
        # waits for it (and those before it), or the older bytes could land last.
        while self._writes and any(offset < e and s < end for _, s, e in self._writes):
            await asyncio.wrap_future(self._writes.popleft()[0])
        while len(self._writes) >= self._write_depth:
            await asyncio.wrap_future(self._writes.popleft()[0])
        self._writes.append((self._executor.submit(write, self.fd, data, offset), offset, end))

    async def settle(self) -> None:
        """Write what was gathered, wait for every write in flight; raise the first
        one's error."""
        error: BaseException | None = None
        if self._gathered:
            await self._submit_gathered()
        while self._writes:
            try:
                await asyncio.wrap_future(self._writes.popleft()[0])
            except OSError as exc:
                error = error or exc
        if error is not None:
            raise error

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending = [asyncio.wrap_future(f) for f in [*self._ahead.values(), *self._stray]]
        self._ahead.clear()
        self._stray.clear()
        await asyncio.gather(*pending, return_exceptions=True)
        try:
            await self.settle()
        finally:
            await asyncio.wrap_future(self._executor.submit(os.close, self.fd))

    def _drop_read_ahead(self, below: int | None = None) -> None:
        """Forget read-ahead chunks before index `below` (all, without it)."""
        dropped = [i for i in self._ahead if below is None or i < below]
        # Not cancelled mid-read (a running pread cannot be): close() still awaits them.
        running = [f for f in map(self._ahead.pop, dropped) if not f.cancel()]
        self._stray = [f for f in self._stray if not f.done()] + running
