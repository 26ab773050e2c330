"""A container's stdin/stdout/stderr over the socket that `attach` hijacks: the Docker
side of :meth:`agent.runtime.protocol.ContainerRuntime.attach`.

The socket is handed to asyncio (non-blocking), as exec's is: the loop's own read
callback splits the multiplexed frames and hands each chunk on at once. No thread
reads it, so a line costs no hand-over between threads (and no wait for the GIL) on
its way to the console; no thread is pinned per container either.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast

from agent.runtime.docker_wire import split_frames
from agent.runtime.types import ContainerRuntimeError, NotRunning, OnOutput
from common.logging import get_logger

log = get_logger(__name__)


class DockerAttachment(asyncio.Protocol):
    """One attach socket (see the Protocol :class:`AttachedStreams` for contracts).
    Open it with :meth:`open`; its callbacks run on the event loop's thread."""

    def __init__(self, raw: Any, on_output: OnOutput, on_end: Callable[[], None]) -> None:
        self._raw = raw  # keeps the HTTP response that owns the socket alive
        self._on_output, self._on_end = on_output, on_end
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._ended = False
        self._writable = asyncio.Event()
        self._writable.set()

    @classmethod
    async def open(
        cls, raw: Any, on_output: OnOutput, on_end: Callable[[], None]
    ) -> DockerAttachment:
        attachment = cls(raw, on_output, on_end)
        sock = cast(socket.socket, getattr(raw, "_sock", raw))
        try:
            await asyncio.get_running_loop().create_connection(lambda: attachment, sock=sock)
        except OSError as exc:
            with contextlib.suppress(OSError):
                raw.close()
            raise ContainerRuntimeError(f"cannot attach to the container: {exc}") from exc
        return attachment

    # ---- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            try:
                split_frames(self._buffer, self._on_output)
                return
            except Exception:  # a consumer's bug must not cut the container's output:
                log.exception("attach_output_failed")  # that chunk is lost, on with the rest

    def eof_received(self) -> bool:
        return False  # the engine closed the streams: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._writable.set()  # writers waiting for room see the end
        with contextlib.suppress(OSError):
            self._raw.close()
        self._on_end()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ---- AttachedStreams ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._ended or self._transport is None or self._transport.is_closing()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise NotRunning("the container's input is closed")
        assert self._transport is not None
        self._transport.write(data)  # a failure closes the transport: on_end follows
        await self._writable.wait()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
