"""Task input files in the database, streamed in and out in chunks.

A file's bytes are `task_file_chunks` rows of :data:`CHUNK_BYTES` (the last one
shorter), written as the bytes arrive and read back one at a time, so neither a
multi-GiB upload nor an agent's fetch of it holds more than a chunk or two in memory.
They live in the database, not on one control plane's disk: an agent may fetch a file
from any control plane sharing it (docs/high-availability.md).

A file is received *staged* (no task yet: a request's files arrive before its spec is
checked and its task created); :meth:`InputStore.adopt` gives it to its task in the
task's creating transaction. A request that fails discards what it staged; staged files
left by a control plane that died mid-request are swept after :data:`STAGED_GRACE`.
Each chunk is its own short transaction, so a long upload never holds SQLite's writer.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.db.engine import Database
from controlplane.db.tables.tasks import TaskFile, TaskFileChunk
from controlplane.db.types import utcnow

CHUNK_BYTES = 1024 * 1024
STAGED_GRACE = timedelta(days=1)


class InputTooLarge(ValueError):
    """The file (or the request's files together) went over the allowed size."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file now in the store: its id (a staged `task_files` row), size and digest."""

    id: uuid.UUID
    size: int
    sha256: str


async def _rechunked(pieces: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """`pieces` regrouped into chunks of exactly CHUNK_BYTES (the last one shorter)."""
    buffer = bytearray()
    async for piece in pieces:
        buffer += piece
        while len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer[:CHUNK_BYTES])
            del buffer[:CHUNK_BYTES]
    if buffer:
        yield bytes(buffer)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class InputStore:
    """Input files of tasks in `database` (see the module doc)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def receive(self, pieces: AsyncIterable[bytes], *, limit: int) -> StoredFile:
        """Store the bytes of `pieces` as a new staged file, chunk by chunk.

        InputTooLarge as soon as more than `limit` bytes arrived; on any error (that
        one, the source's, a cancellation) nothing of the file is left behind."""
        staged = TaskFile()
        async with self._db.transaction() as session:
            session.add(staged)
        digest = hashlib.sha256()
        size = seq = 0
        try:
            async for chunk in _rechunked(pieces):
                size += len(chunk)
                if size > limit:
                    raise InputTooLarge(f"more than the {limit} bytes allowed")
                # hashlib lets go of the GIL for large buffers: the thread runs in parallel.
                hashing = asyncio.create_task(asyncio.to_thread(digest.update, chunk))
                try:
                    async with self._db.transaction() as session:
                        session.add(TaskFileChunk(file_id=staged.id, seq=seq, data=chunk))
                finally:
                    await hashing
                seq += 1
            sha256 = digest.hexdigest()
            async with self._db.transaction() as session:
                await session.exec(
                    update(TaskFile)
                    .where(col(TaskFile.id) == staged.id)
                    .values(size=size, sha256=sha256)
                )
        except BaseException:
            await asyncio.shield(self.discard([staged.id]))
            raise
        return StoredFile(staged.id, size, sha256)

    async def store(self, data: bytes) -> StoredFile:
        """Store bytes already in memory (inline contents, small fetches) as a staged file."""
        return await self.receive(_one(data), limit=len(data))

    async def adopt(
        self, session: AsyncSession, file_id: uuid.UUID, task_id: uuid.UUID, **fields: object
    ) -> TaskFile:
        """Give staged file `file_id` to `task_id` with `fields` (path, mode, ...), in
        the caller's transaction; LookupError when it is no longer staged."""
        adopted = await session.exec(
            update(TaskFile)
            .where(col(TaskFile.id) == file_id, col(TaskFile.task_id).is_(None))
            .values(task_id=task_id, **fields)
        )
        if adopted.rowcount != 1:
            raise LookupError(f"staged input file {file_id} is gone")
        row = await session.get(TaskFile, file_id, populate_existing=True)
        assert row is not None
        return row

    async def discard(self, file_ids: Iterable[uuid.UUID]) -> None:
        """Delete staged files (their chunks go with them); adopted ones are kept."""
        ids = list(file_ids)
        if not ids:
            return
        async with self._db.transaction() as session:
            await session.exec(
                delete(TaskFile).where(col(TaskFile.id).in_(ids), col(TaskFile.task_id).is_(None))
            )

    async def sweep_staged(self) -> None:
        """Delete staged files older than STAGED_GRACE (left by a request that died)."""
        cutoff = utcnow() - STAGED_GRACE
        async with self._db.transaction() as session:
            await session.exec(
                delete(TaskFile).where(
                    col(TaskFile.task_id).is_(None), col(TaskFile.created_at) < cutoff
                )
            )

    async def read(self, file_id: uuid.UUID) -> AsyncIterator[bytes]:
        """The file's bytes, one chunk at a time (one short query per chunk)."""
        seq = 0
        while True:
            async with self._db.session() as session:
                data = (
                    await session.exec(
                        select(TaskFileChunk.data).where(
                            col(TaskFileChunk.file_id) == file_id, col(TaskFileChunk.seq) == seq
                        )
                    )
                ).first()
            if data is None:
                return
            yield bytes(data)
            seq += 1
