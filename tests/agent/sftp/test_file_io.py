"""OpenFile: read-ahead and write-behind keep data exact and errors visible."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent.sftp import file_io
from agent.sftp.file_io import CHUNK, OpenFile, pwritev_all


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


async def test_sequential_and_random_reads(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    payload = os.urandom(1_000_003)
    (tmp_path / "f").write_bytes(payload)
    handle = OpenFile(os.open(tmp_path / "f", os.O_RDONLY), len(payload), False, pool)
    got = b""
    while chunk := await handle.read(len(got), 65536):
        got += chunk
    assert got == payload
    assert await handle.read(10, 5) == payload[10:15]  # a jump backwards
    assert await handle.read(999_999, 100) == payload[999_999:]
    await handle.close()


async def test_writes_in_any_order_land_exactly(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    blocks = [os.urandom(10_000) for _ in range(40)]
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    handle = OpenFile(fd, 0, True, pool)
    for index in reversed(range(len(blocks))):
        await handle.write(index * 10_000, blocks[index])
    await handle.close()
    assert (tmp_path / "f").read_bytes() == b"".join(blocks)


async def test_append_keeps_order(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    handle = OpenFile(fd, 0, True, pool, append=True)
    for index in range(200):
        await handle.write(index * 4, b"%04d" % index)
    await handle.close()
    assert (tmp_path / "f").read_bytes() == b"".join(b"%04d" % i for i in range(200))


async def test_a_failed_write_surfaces_later(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    (tmp_path / "f").write_bytes(b"")
    handle = OpenFile(os.open(tmp_path / "f", os.O_RDONLY), 0, True, pool)
    await handle.write(0, b"refused by the kernel")
    with pytest.raises(OSError, match="Bad file descriptor"):
        await handle.close()


async def test_reads_across_read_ahead_chunks(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    payload = os.urandom(3 * CHUNK + 12_345)
    (tmp_path / "f").write_bytes(payload)
    handle = OpenFile(os.open(tmp_path / "f", os.O_RDONLY), len(payload), False, pool)
    got = b""
    while chunk := await handle.read(len(got), 255 * 1024 + 7):  # straddles chunk edges
        got += chunk
    assert got == payload
    assert await handle.read(len(payload), 10) == b""
    assert await handle.read(CHUNK - 3, 0) == b""
    assert await handle.read(CHUNK - 3, 6) == payload[CHUNK - 3 : CHUNK + 3]
    assert await handle.read(CHUNK + 3, 2 * CHUNK) == payload[CHUNK + 3 : 3 * CHUNK + 3]
    await handle.close()


class _CountingPool(ThreadPoolExecutor):
    def __init__(self) -> None:
        super().__init__(4)
        self.submitted = 0

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(*args, **kwargs)


async def test_contiguous_writes_go_to_the_pool_together(tmp_path: Path) -> None:
    """An upload's 32 KiB writes cost one thread hop per CHUNK, not one each; a jump,
    a read and the close write what was gathered, so nothing is lost or read stale."""
    blocks = [os.urandom(32 * 1024) for _ in range(2 * CHUNK // (32 * 1024))]
    with _CountingPool() as pool:
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
        handle = OpenFile(fd, 0, True, pool)
        for index, block in enumerate(blocks):
            await handle.write(index * len(block), block)
        assert pool.submitted <= 2  # 2 MiB in 32 KiB writes: two hops
        await handle.write(5, b"jump")  # not contiguous: what was gathered goes first
        await handle.write(len(blocks) * 32 * 1024, b"tail")
        assert await handle.read(5, 4) == b"jump"  # gathered writes land before a read
        await handle.write(7, b"late")
        await handle.close()
    expected = bytearray(b"".join(blocks) + b"tail")
    expected[5:9] = b"jump"
    expected[7:11] = b"late"
    assert (tmp_path / "f").read_bytes() == expected


async def test_views_of_bytes_are_written_as_they_are(tmp_path: Path) -> None:
    """An upload's data arrives as views into the request bytes read: kept without a
    copy until written; a mutable buffer is copied before the caller reuses it."""
    request = b"header" + os.urandom(32 * 1024)
    mutable = bytearray(b"mutable")
    with _CountingPool() as pool:
        fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
        handle = OpenFile(fd, 0, True, pool)
        await handle.write(0, memoryview(request)[6:])
        await handle.write(32 * 1024, mutable)  # a caller's buffer
        assert handle._gathered[0].obj is request  # type: ignore[union-attr]
        mutable[:] = b"changed"
        await handle.close()
    assert (tmp_path / "f").read_bytes() == request[6:] + b"mutable"


def test_pwritev_all_finishes_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwritev

    def at_most_five(fd: int, buffers: list[memoryview], offset: int) -> int:
        return real(fd, [b"".join(bytes(b) for b in buffers)[:5]], offset)

    monkeypatch.setattr(os, "pwritev", at_most_five)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        pwritev_all(fd, [b"abc", b"defghij", b"", b"klmnopq"], 2)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"\0\0abcdefghijklmnopq"


async def test_random_reads_after_sequential_and_after_writes(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """Read-ahead never answers a random read with stale or misplaced bytes, on a
    read-only handle after sequential reads, nor on a handle the session writes."""
    rng = random.Random(17)
    payload = bytearray(os.urandom(3 * CHUNK + 999))
    (tmp_path / "f").write_bytes(payload)
    reader = OpenFile(os.open(tmp_path / "f", os.O_RDONLY), len(payload), False, pool)
    for offset in range(0, CHUNK + 5, 32 * 1024):  # sequential: read-ahead in flight
        assert await reader.read(offset, 32 * 1024) == payload[offset : offset + 32 * 1024]
    for _ in range(200):
        offset, size = rng.randrange(len(payload) + 10), rng.randrange(1, 300_000)
        assert await reader.read(offset, size) == payload[offset : offset + size]
        if rng.random() < 0.3:  # and sequential again from there
            assert await reader.read(offset + size, 4096) == payload[offset + size :][:4096]
    await reader.close()
    writer = OpenFile(os.open(tmp_path / "f", os.O_RDWR), len(payload), True, pool)
    for _ in range(100):
        offset = rng.randrange(len(payload) - 70_000)
        if rng.random() < 0.5:
            block = os.urandom(rng.randrange(1, 70_000))
            await writer.write(offset, block)
            payload[offset : offset + len(block)] = block
        size = rng.randrange(1, 70_000)
        assert await writer.read(offset, size) == payload[offset : offset + size]
    await writer.close()
    assert (tmp_path / "f").read_bytes() == payload


async def test_a_later_write_over_a_slow_earlier_one_lands_last(
    tmp_path: Path, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes run in the pool in any order: the first (a whole CHUNK, slow here) must not
    # land after a later write into the same bytes (CI once saw the later one lost).
    slow = file_io.pwrite_all

    def pwrite_slowly(fd: int, data: Any, offset: int) -> None:
        if len(data) >= CHUNK:
            time.sleep(0.2)
        slow(fd, data, offset)

    monkeypatch.setattr(file_io, "pwrite_all", pwrite_slowly)
    payload = os.urandom(CHUNK)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    handle = OpenFile(fd, 0, True, pool)
    await handle.write(0, payload)  # a whole CHUNK: in the pool at once
    await handle.write(7, b"patch")
    await handle.close()
    assert (tmp_path / "f").read_bytes() == payload[:7] + b"patch" + payload[12:]
