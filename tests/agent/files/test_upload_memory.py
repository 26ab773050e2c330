"""A 512 MiB upload through the real agent's HTTP port holds no more than a few chunks
in memory: the process (agent and client alike) grows by far less than the file."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import psutil

from tests.agent.files.conftest import FileAgent

MiB = 1024 * 1024
SIZE = 512 * MiB


async def _body(piece: bytes, count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield piece  # the same object every time: the client holds one piece


async def test_a_512_mib_upload_keeps_memory_bounded(file_agent: FileAgent) -> None:
    process = psutil.Process()
    status, _ = await file_agent.put("warm.bin", os.urandom(4 * MiB))  # pools and buffers
    assert status == 201
    baseline = process.memory_info().rss
    peak = baseline

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        async with file_agent.http.put(
            file_agent.url("upload"),
            params={"path": "big.bin"},
            data=_body(os.urandom(MiB), SIZE // MiB),
            headers=file_agent.auth("file-upload", path="big.bin"),
        ) as response:
            answer = await response.json()
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    assert (response.status, answer["size"]) == (201, SIZE)
    assert (file_agent.server_dir / "big.bin").stat().st_size == SIZE
    assert peak - baseline < 64 * MiB, f"RSS grew by {(peak - baseline) / MiB:.0f} MiB"
    (file_agent.server_dir / "big.bin").unlink()
