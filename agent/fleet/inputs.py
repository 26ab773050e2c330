"""Input files that CreateServer names by `source` rather than carrying their bytes.

A task's input files may be GiBs, so the control plane sends only where each is
(`source`, a path under its /v1/remote/task-files/), its size and its SHA-256. Before
the container is created the agent streams each into its own `inputs/` directory
(outside every server directory: nothing a tenant made can redirect the write), a
chunk at a time while the next is read, hashing as it writes; a file whose size or
digest differs is refused. :mod:`agent.fleet.data_dir` then copies it into place
beneath the server directory (kernel to kernel), and the staged copy is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import aiohttp

from agent.controlplane_client import ControlPlaneError
from agent.files.transfer import write_stream
from agent.runtime import ContainerRuntimeError
from protos import agent_pb2 as pb

COPY_STEP = 64 * 1024 * 1024
#: Staged input files by their path in the spec.
StagedInputs = Mapping[str, Path]


class InputUnavailable(ContainerRuntimeError):
    """An input file could not be fetched, or arrived other than announced."""


class InputSource(Protocol):
    """Where `source` input files come from (the agent's control plane client)."""

    def task_input(
        self, source: str
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.StreamReader]:
        """The file's body, streamed; ControlPlaneError when it cannot be had."""
        ...


def _open_new(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


async def _fetch_one(source: InputSource, item: pb.InputFile, dest: Path) -> None:
    fd = await asyncio.to_thread(_open_new, dest)
    digest = hashlib.sha256()
    try:
        async with source.task_input(item.source) as body:
            size = await write_stream(body, fd, 0, digest=digest)
    except ControlPlaneError as exc:
        raise InputUnavailable(f"input file {item.path}: {exc}") from exc
    finally:
        await asyncio.to_thread(os.close, fd)
    if size != item.size or digest.hexdigest() != item.sha256.lower():
        raise InputUnavailable(
            f"input file {item.path}: received {size} bytes that are not the announced"
            f" {item.size} bytes of sha256 {item.sha256}"
        )


async def stage_inputs(
    spec: pb.ServerSpec, source: InputSource | None, staging: Path
) -> dict[str, Path]:
    """Fetch every `source` input file of `spec` into `staging` (the caller removes
    them with :func:`discard_staged`); InputUnavailable when one cannot be had, and
    then nothing stays staged."""
    remote = [item for item in spec.files if item.source]
    if not remote:
        return {}
    if source is None:
        raise InputUnavailable("this agent has no control plane to fetch input files from")
    staged: dict[str, Path] = {}
    try:
        for item in remote:
            staged[item.path] = staging / f"{spec.id}-{uuid.uuid4().hex}"
            await _fetch_one(source, item, staged[item.path])
    except BaseException:
        await asyncio.shield(asyncio.to_thread(discard_staged, staged))
        raise
    return staged


def staging_dir(agent_dir: Path) -> Path:
    """Where input files are staged under the agent's data directory."""
    return agent_dir / "inputs"


def clear_staging(agent_dir: Path) -> None:
    """At agent start: remove what a fetch cut short by a stop left staged (blocking)."""
    shutil.rmtree(staging_dir(agent_dir), ignore_errors=True)


def discard_staged(staged: StagedInputs) -> None:
    """Remove staged input files (blocking)."""
    for path in staged.values():
        path.unlink(missing_ok=True)


def copy_staged(staged: Path, fd: int) -> None:
    """Copy a staged file into the open file `fd` at its current offset (blocking;
    sendfile: in the kernel, never through this process's memory)."""
    source = os.open(staged, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while os.sendfile(fd, source, None, COPY_STEP):
            pass
    finally:
        os.close(source)
