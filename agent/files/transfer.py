"""Streamed uploads of one file (downloads: :mod:`agent.files.download`).

Uploads never hold more than two chunks of a body in memory: while one chunk is being
written in a worker thread, the next is read from the socket. `PUT` writes a file
from its start (truncating it); `PATCH ?offset=N` appends at N, which must be the size
already stored (answered by `HEAD` as `Upload-Offset`), so an interrupted upload
resumes where its bytes end.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import StreamReader, web

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

#: Bytes handed to a worker thread at once. Larger chunks measured slower here: a
#: chunk that outgrows the L2 cache is read back from memory by the write.
UPLOAD_CHUNK = 1024 * 1024
_IOV_MAX = 1024


def _write_pieces(fd: int, pieces: list[bytes], position: int, digest: Hash | None) -> None:
    """pwritev the pieces at `position` (a short write continues where it stopped),
    then feed them to `digest`. The pieces are the socket's own buffers: they are
    never concatenated (no copy on the event loop)."""
    views = [memoryview(piece) for piece in pieces]
    index = 0
    while index < len(views):
        written = os.pwritev(fd, views[index : index + _IOV_MAX], position)
        position += written
        while written and index < len(views):
            if written >= len(views[index]):
                written -= len(views[index])
                index += 1
            else:
                views[index] = views[index][written:]
                written = 0
    if digest is not None:
        for piece in pieces:
            digest.update(piece)


async def receive_body(
    request: web.Request, fd: int, offset: int, charge: Callable[[int, int], None]
) -> int:
    """Write the request body to `fd` from `offset`; returns the end offset.

    `charge(start, length)` is called on the loop before each chunk is written (it
    raises to refuse the chunk: e.g. the disk limit)."""
    return await write_stream(request.content, fd, offset, charge)


async def write_stream(
    stream: StreamReader,
    fd: int,
    offset: int,
    charge: Callable[[int, int], None] | None = None,
    digest: Hash | None = None,
) -> int:
    """Write what `stream` (a request's or a response's body) holds to `fd` from
    `offset`, feeding `digest` (if any) in order; returns the end offset. Chunks are
    written (and hashed) in a worker thread while the next one is read.

    `charge(start, length)` is called on the loop before each chunk is written (it
    raises to refuse the chunk: e.g. the disk limit)."""
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    pieces: list[bytes] = []
    buffered = 0
    position = offset

    async def flush() -> None:
        nonlocal pending, pieces, buffered, position
        if charge is not None:
            charge(position, buffered)
        if pending is not None:
            await pending  # in order: the digest sees the chunks as they come
        pending = loop.run_in_executor(None, _write_pieces, fd, pieces, position, digest)
        position += buffered
        pieces, buffered = [], 0

    try:
        async for piece in stream.iter_any():
            pieces.append(piece)
            buffered += len(piece)
            if buffered >= UPLOAD_CHUNK:
                await flush()
        if pieces:
            await flush()
    finally:
        if pending is not None:
            await pending
    return position
