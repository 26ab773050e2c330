"""Downloads: what a GET/HEAD answers for each precondition and range (the pure
`plan_answer`), and against a real agent: HEAD, conditional requests, a body sent in
many sendfile wake-ups on a kept-alive connection, and a client that goes away mid-body
(the fd of the file is closed)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from agent.files.download import Answer, etag_of, plan_answer
from tests.agent.files.conftest import FileAgent

SIZE = 10
MTIME = 1_700_000_000
NS = MTIME * 10**9
INFO = os.stat_result((0o100644, 1, 1, 1, 0, 0, SIZE, *[MTIME] * 3, *[float(MTIME)] * 3, *[NS] * 3))
ETAG = f'"{etag_of(INFO)}"'
OLDER = "Tue, 14 Nov 2023 22:13:19 GMT"  # a second before MTIME
NEWER = "Tue, 14 Nov 2023 22:13:21 GMT"


def answer(**headers: str) -> Answer:
    request = make_mocked_request("GET", "/", headers=CIMultiDict(headers))
    return plan_answer(request, INFO)


def test_the_whole_file_without_range_or_preconditions() -> None:
    assert answer() == Answer(200, 0, SIZE)


@pytest.mark.parametrize(
    ("header", "start", "count", "content_range"),
    [
        ("bytes=2-4", 2, 3, "bytes 2-4/10"),
        ("bytes=5-", 5, 5, "bytes 5-9/10"),
        ("bytes=-3", 7, 3, "bytes 7-9/10"),
        ("bytes=-30", 0, 10, "bytes 0-9/10"),
        ("bytes=8-100", 8, 2, "bytes 8-9/10"),
    ],
)
def test_one_range_is_a_partial_answer(
    header: str, start: int, count: int, content_range: str
) -> None:
    assert answer(Range=header) == Answer(206, start, count, content_range)


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=4-2", "bytes=0-1,4-5", "lines=1-2"])
def test_an_unsatisfiable_or_unknown_range_is_416(header: str) -> None:
    assert answer(Range=header) == Answer(416, content_range="bytes */10", validators=False)


def test_preconditions() -> None:
    assert answer(**{"If-None-Match": ETAG}).status == 304
    assert answer(**{"If-None-Match": f"W/{ETAG}"}).status == 304  # weak comparison
    assert answer(**{"If-None-Match": '"other"'}).status == 200
    assert answer(**{"If-Modified-Since": NEWER}).status == 304
    assert answer(**{"If-Modified-Since": OLDER}).status == 200
    assert answer(**{"If-Match": '"other"'}).status == 412
    assert answer(**{"If-Match": f"W/{ETAG}"}).status == 412  # strong comparison
    assert answer(**{"If-Match": "*"}).status == 200
    assert answer(**{"If-Unmodified-Since": OLDER}).status == 412
    # If-Match decides alone when both are sent (RFC 9110 13.2.2).
    assert answer(**{"If-Match": ETAG, "If-Unmodified-Since": OLDER}).status == 200


def test_if_range_serves_the_range_only_while_the_validator_matches() -> None:
    assert answer(Range="bytes=2-4", **{"If-Range": ETAG}).status == 206
    assert answer(Range="bytes=2-4", **{"If-Range": NEWER}).status == 206
    assert answer(Range="bytes=2-4", **{"If-Range": '"older"'}) == Answer(200, 0, SIZE)
    assert answer(Range="bytes=2-4", **{"If-Range": f"W/{ETAG}"}).status == 200
    assert answer(Range="bytes=2-4", **{"If-Range": OLDER}).status == 200
    assert answer(Range="bytes=2-4", **{"If-Range": "garbage"}).status == 200


async def test_head_and_conditional_requests(
    file_agent: FileAgent, no_blocking_calls: None
) -> None:
    await asyncio.to_thread((file_agent.server_dir / "f.txt").write_bytes, b"0123456789")
    url = file_agent.url("download")
    query = {"path": "f.txt", "token": file_agent.token("file-download", path="f.txt")}
    async with file_agent.http.head(url, params=query) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "10"
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["Content-Disposition"] == 'attachment; filename="f.txt"'
        assert await response.read() == b""
        etag = response.headers["ETag"]
    async with file_agent.http.get(url, params=query, headers={"If-None-Match": etag}) as got:
        assert got.status == 304
        assert got.headers["ETag"] == etag
        assert await got.read() == b""
    ranged = {"Range": "bytes=3-", "If-Range": etag}
    async with file_agent.http.get(url, params=query, headers=ranged) as got:
        assert got.status == 206
        assert got.headers["Content-Range"] == "bytes 3-9/10"
        assert await got.read() == b"3456789"
    async with file_agent.http.get(url, params=query, headers={"Range": "bytes=20-"}) as got:
        assert got.status == 416
        assert got.headers["Content-Range"] == "bytes */10"


async def test_a_large_body_and_the_next_request_on_the_same_connection(
    file_agent: FileAgent, no_blocking_calls: None
) -> None:
    data = os.urandom(48 * 1024 * 1024)  # many sendfile wake-ups through aiohttp's reader
    await asyncio.to_thread((file_agent.server_dir / "big.bin").write_bytes, data)
    got = await file_agent.download("big.bin", {"Range": "bytes=1-"})
    assert hashlib.sha256(got).digest() == hashlib.sha256(data[1:]).digest()
    # The body had exactly Content-Length bytes: the kept-alive connection goes on.
    assert await file_agent.download("big.bin", {"Range": "bytes=-5"}) == data[-5:]


def _open_fds_of(path: Path) -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == str(path):
                count += 1
        except OSError:
            continue
    return count


async def test_a_client_that_goes_away_mid_body_leaves_no_open_fd(
    file_agent: FileAgent, no_blocking_calls: None
) -> None:
    target = file_agent.server_dir / "big.bin"
    await asyncio.to_thread(target.write_bytes, os.urandom(64 * 1024 * 1024))
    query = f"path=big.bin&token={file_agent.token('file-download', path='big.bin')}"
    host, port = file_agent.base.removeprefix("http://").split(":")
    path = file_agent.url("download").removeprefix(file_agent.base)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path}?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await reader.readexactly(1024 * 1024)  # the agent is mid-body: its buffers are full
    assert await asyncio.to_thread(_open_fds_of, target) == 1
    writer.close()
    await writer.wait_closed()
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(_open_fds_of, target):
        assert time.monotonic() < deadline, "the download kept the file open"
        await asyncio.sleep(0.05)
