"""Downloads of one file: the bytes of the very inode opened beneath the server
directory (its fd, never a path looked up again), with HTTP Range and conditional
requests (`ETag`, `Last-Modified`, `If-Match`, `If-None-Match`, `If-Modified-Since`,
`If-Unmodified-Since`, `If-Range`).

Over plain HTTP the body is the kernel's sendfile from the page cache to the socket,
driven by the event loop: the socket stays non-blocking and one writer callback stays
registered for the whole body, each writability wake-up sending up to
`SENDFILE_CHUNK`. asyncio's `loop.sendfile` (what aiohttp's FileResponse uses) removes
and re-adds its epoll registration around every call, which cost as much CPU as the
copy on loopback (docs/performance.md, "File transfer"). Over TLS the kernel cannot
encrypt: chunks read in a worker thread go through the transport, the next read
overlapping the write of the current one.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import ETAG_ANY, ETag

#: Bytes one writability wake-up may send: bounds the time one download holds the
#: loop (nginx's sendfile_max_chunk is 2 MiB) while keeping wake-ups few.
SENDFILE_CHUNK = 4 * 1024 * 1024
#: Bytes a worker thread reads at once when the body goes through the transport (TLS).
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """What a GET/HEAD of a file answers: the status, the bytes [start, start + count)
    as the body, `Content-Range` when there is one, and whether the validators (ETag,
    Last-Modified) and `Accept-Ranges` go with it."""

    status: int
    start: int = 0
    count: int = 0
    content_range: str | None = None
    validators: bool = True


def etag_of(info: os.stat_result) -> str:
    """The file's entity tag (unquoted), aiohttp's FileResponse's: mtime_ns-size."""
    return f"{info.st_mtime_ns:x}-{info.st_size:x}"


def plan_answer(request: web.BaseRequest, info: os.stat_result) -> Answer:
    """The answer to `request` for a file whose fstat is `info` (RFC 9110 13.2.2: the
    preconditions in order, then If-Range and Range; one range only)."""
    size, mtime, etag = info.st_size, info.st_mtime, etag_of(info)
    if (wanted := request.if_match) is not None:
        if not _matches(etag, wanted, weak=False):
            return Answer(412, validators=False)
    elif (since := request.if_unmodified_since) is not None and mtime > since.timestamp():
        return Answer(412, validators=False)
    if (tags := request.if_none_match) is not None:
        if _matches(etag, tags, weak=True):
            return Answer(304)
    elif (since := request.if_modified_since) is not None and mtime <= since.timestamp():
        return Answer(304)
    whole = Answer(200, 0, size)
    if "Range" not in request.headers or not _range_applies(request, etag, mtime):
        return whole
    try:
        wanted_range = request.http_range
    except ValueError:
        return Answer(416, content_range=f"bytes */{size}", validators=False)
    start: int = wanted_range.start
    if start < 0:  # bytes=-n: the last n bytes
        start, stop = max(0, size + start), size
    else:
        stop = size if wanted_range.stop is None else min(wanted_range.stop, size)
    if start >= size:
        return Answer(416, content_range=f"bytes */{size}", validators=False)
    return Answer(206, start, stop - start, f"bytes {start}-{stop - 1}/{size}")


def _matches(etag: str, tags: tuple[ETag, ...], *, weak: bool) -> bool:
    return any(
        tag.value == ETAG_ANY or (tag.value == etag and (weak or not tag.is_weak)) for tag in tags
    )


def _range_applies(request: web.BaseRequest, etag: str, mtime: float) -> bool:
    """If-Range: the range is served only while the validator still matches; an
    entity tag must match strongly, a date not be older than the file."""
    raw = request.headers.get("If-Range")
    if raw is None:
        return True
    if raw.startswith(('"', "W/")):
        return raw == f'"{etag}"'
    date = request.if_range
    return date is not None and mtime <= date.timestamp()


async def send_file(
    request: web.BaseRequest, fd: int, info: os.stat_result, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Answer GET/HEAD with the inode behind `fd` (whose fstat is `info`), already
    sent when this returns. Takes `fd`: it is closed however the answer ends."""
    try:
        answer = plan_answer(request, info)
        response = web.StreamResponse(status=answer.status, headers=headers)
        if answer.validators:
            response.etag = etag_of(info)
            response.last_modified = info.st_mtime
            if answer.status != 304:
                response.headers["Accept-Ranges"] = "bytes"
        if answer.content_range is not None:
            response.headers["Content-Range"] = answer.content_range
        if answer.status != 304:
            response.content_length = answer.count
        writer = await response.prepare(request)
        if writer is not None and answer.count and request.method != "HEAD":
            await _send_body(request, writer, fd, answer.start, answer.count)
        await response.write_eof()
        return response
    finally:
        os.close(fd)


async def _send_body(
    request: web.BaseRequest, writer: AbstractStreamWriter, fd: int, start: int, count: int
) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    sock = transport.get_extra_info("socket")
    plain = sock is not None and transport.get_extra_info("sslcontext") is None
    # sendfile writes beneath the transport: only once its buffer (the headers) is out.
    if plain and transport.get_write_buffer_size() == 0:
        out = os.dup(sock.fileno())  # its own number: the loop refuses a transport's fd
        try:
            if not os.get_blocking(out):  # never a blocking sendfile on the loop
                await _sendfile(transport, out, fd, start, count)
                return
        finally:
            os.close(out)
    await _copy_through(writer, fd, start, count)


async def _sendfile(
    transport: asyncio.Transport, out: int, fd: int, start: int, count: int
) -> None:
    """sendfile [start, start + count) of `fd` to the non-blocking socket `out` from a
    writer callback that stays registered until the end (level-triggered: called
    again while the socket is writable)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    position, end = start, start + count

    def on_writable() -> None:
        nonlocal position
        if done.done():
            return
        try:
            sent = os.sendfile(out, fd, position, min(SENDFILE_CHUNK, end - position))
        except (BlockingIOError, InterruptedError):
            return
        except Exception as exc:  # the awaiting download raises it
            done.set_exception(exc)
            return
        if sent == 0:  # the file was truncated beneath the answer: cut the connection
            done.set_exception(OSError(errno.EIO, "file shrank while being sent"))
            return
        position += sent
        if position >= end:
            done.set_result(None)

    reading = transport.is_reading()
    if reading:  # like loop.sendfile: no request is read while the body goes out
        transport.pause_reading()
    loop.add_writer(out, on_writable)
    try:
        await done
    finally:
        loop.remove_writer(out)
        if reading and not transport.is_closing():
            transport.resume_reading()


async def _copy_through(writer: AbstractStreamWriter, fd: int, start: int, count: int) -> None:
    """The body through the transport (TLS): `READ_CHUNK` preads in a worker thread,
    the next one read while the current one is written; two chunks in memory at most."""
    loop = asyncio.get_running_loop()
    position, end = start, start + count
    pending = loop.run_in_executor(None, os.pread, fd, min(READ_CHUNK, count), start)
    try:
        while True:
            chunk = await pending
            if not chunk:
                raise OSError(errno.EIO, "file shrank while being sent")
            position += len(chunk)
            if position < end:
                size = min(READ_CHUNK, end - position)
                pending = loop.run_in_executor(None, os.pread, fd, size, position)
            await writer.write(chunk)
            if position >= end:
                return
    finally:
        # The caller closes fd once this returns: a read still running in its thread
        # ends first (and its outcome is taken, so nothing is logged as unretrieved).
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()
