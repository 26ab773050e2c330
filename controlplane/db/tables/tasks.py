"""One-shot tasks (seed 003): the task, its input files, and its logs once it ended.

A task is created `Pending`, becomes `Running` when started on a node (its container is
the agent server whose id is the task id), and ends `Succeeded` (exit code 0) or
`Failed` (any other exit, or it could not be started). A Pending task asked to start
when no node has room waits in the queue (`queued_at`, `queue_reason`). The logs are
copied here when it ends, so they outlive the container.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

from controlplane.db.types import UtcDateTime, new_id, utcnow

PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
TASK_STATUSES = (PENDING, RUNNING, SUCCEEDED, FAILED)
FINISHED_STATUSES = frozenset({SUCCEEDED, FAILED})


def _ts(*, nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(UtcDateTime(), nullable=nullable, index=index)


class Task(SQLModel, table=True):
    """A container run once: `command` (argv) in `image` with `env` and limits."""

    __tablename__ = "tasks"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    name: str = Field(default="", max_length=100)
    image: str = Field(max_length=500)
    command: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    env: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    cpu_millis: int = 0
    memory_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    network_disabled: bool = False
    status: str = Field(default=PENDING, max_length=16, index=True)
    node_id: uuid.UUID | None = Field(default=None)
    container_id: str = Field(default="", max_length=100)
    exit_code: int | None = Field(default=None)
    oom_killed: bool = False
    error_message: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(index=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    started_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    # Seed 003: the watched repo (no foreign key: the task outlives a removed repo),
    # the release asset placed in the working directory, and the release's tag.
    repo_id: uuid.UUID | None = Field(default=None)
    release_asset: str = Field(default="", max_length=255)
    release_tag: str = Field(default="", max_length=255)
    # The queue (controlplane/tasks/queue.py): a Pending task with `queued_at` was
    # asked to start and waits for room, in `queued_at` order, for `queue_reason`.
    # `attempts` counts its starts; it is re-queued after losing its node while
    # attempts <= `retries`.
    queued_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True, index=True))
    queue_reason: str = Field(default="", max_length=500)
    retries: int = 0
    attempts: int = 0


class TaskFile(SQLModel, table=True):
    """An input file, placed at `path` (relative) in the task's working directory.

    Its bytes are the rows of :class:`TaskFileChunk` (controlplane/tasks/input_store.py).
    A file still being received, or received for a request that has not created its
    task yet, is *staged*: `task_id` is NULL until the task's creation adopts it (a
    staged file older than a day is swept away).
    """

    __tablename__ = "task_files"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    task_id: uuid.UUID | None = Field(
        default=None, foreign_key="tasks.id", ondelete="CASCADE", index=True
    )
    path: str = Field(default="", max_length=255)
    mode: int = 0o644
    size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(default="", max_length=64)  # hex digest of the whole file
    mime_type: str = Field(default="", max_length=255)
    source_url: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())

    def describe(self) -> dict[str, Any]:
        """The public view (no content)."""
        return {
            "id": str(self.id),
            "path": self.path,
            "size": self.size,
            "mime_type": self.mime_type,
            "source_url": self.source_url or None,
        }


class TaskFileChunk(SQLModel, table=True):
    """Bytes `seq` (0, 1, ...) of an input file, in order; every chunk but the last
    is full (controlplane/tasks/input_store.py's CHUNK_BYTES when written)."""

    __tablename__ = "task_file_chunks"

    file_id: uuid.UUID = Field(foreign_key="task_files.id", ondelete="CASCADE", primary_key=True)
    seq: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class TaskLog(SQLModel, table=True):
    """The output of a finished task, kept after its container is gone."""

    __tablename__ = "task_logs"

    task_id: uuid.UUID = Field(foreign_key="tasks.id", ondelete="CASCADE", primary_key=True)
    content: str = Field(sa_column=Column(Text, nullable=False))
    truncated: bool = False
    saved_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
