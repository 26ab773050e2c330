"""Interactive `docker exec` with a TTY: the Docker side of
:meth:`agent.runtime.protocol.ContainerRuntime.open_exec`.

Engine calls (create, start, resize, inspect) run in the runtime's thread pool. The
socket that `exec start` hijacks is handed to asyncio (non-blocking, read and written
on the loop with flow control), so no thread is pinned per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from agent.runtime.types import ContainerRuntimeError, NotRunning
from common.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)
Call = Callable[..., Awaitable[Any]]  # DockerRuntime._call: (fn, *args, what=, **kw)

READ_SIZE = 65536
# Docker 20.10 answers an exec's end on the socket a moment before inspect says so.
EXIT_WAIT_SECONDS = 3.0
HANGUP_GRACE_SECONDS = 2.0
_POLL_SECONDS = 0.05


def _exec_state(api: Any, exec_id: str) -> tuple[bool, int | None, int]:
    """(running, exit code, host pid) of one exec."""
    facts = api.exec_inspect(exec_id)
    code = facts.get("ExitCode")
    exit_code = None if code is None else int(code)
    return bool(facts.get("Running")), exit_code, int(facts.get("Pid") or 0)


def _wait_ended(api: Any, exec_id: str, timeout: float) -> int | None:
    """Poll until the exec has ended; its exit code, or None if it still runs."""
    deadline = time.monotonic() + timeout
    while True:
        running, code, _ = _exec_state(api, exec_id)
        if not running:
            return code
        if time.monotonic() >= deadline:
            return None
        time.sleep(_POLL_SECONDS)


def _signal_exec(api: Any, exec_id: str, signum: int) -> bool:
    """Send `signum` to the exec's process if it still runs; False when it has ended.

    The engine has no API to stop an exec, and leaves it running when its socket
    closes; the agent runs on the host, so it signals the host pid. A pidfd taken
    while the engine still reports it running cannot hit a recycled pid."""
    running, _, pid = _exec_state(api, exec_id)
    if not running or pid <= 0:
        return False
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not _exec_state(api, exec_id)[0]:
            return False
        signal.pidfd_send_signal(handle, signum)
    finally:
        os.close(handle)
    return True


def _hang_up(api: Any, exec_id: str) -> None:
    """SIGHUP a still running exec (as a terminal closing would), SIGKILL after a grace."""
    try:
        if _signal_exec(api, exec_id, signal.SIGHUP) and (
            _wait_ended(api, exec_id, HANGUP_GRACE_SECONDS) is None
        ):
            _signal_exec(api, exec_id, signal.SIGKILL)
    except (OSError, ContainerRuntimeError) as exc:
        # e.g. the agent runs in a container of its own and cannot see the host pid.
        log.warning("exec_left_running", exec_id=exec_id, error=str(exc))
    except Exception as exc:  # the engine's own errors: the exec is gone
        log.debug("exec_hang_up", exec_id=exec_id, error=str(exc))


class DockerExec:
    """One started exec and its hijacked socket (see the Protocol for contracts)."""

    def __init__(
        self,
        call: Call,
        api: Any,
        exec_id: str,
        raw: Any,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._call, self._api, self.exec_id = call, api, exec_id
        self._raw = raw  # keeps the HTTP response that owns the socket alive
        self._reader, self._writer = reader, writer
        self._ended = False
        self._closed = False

    async def read(self) -> bytes:
        if self._ended:
            return b""
        try:
            data = await self._reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self._ended = True
        return data

    async def write(self, data: bytes) -> None:
        if self._ended or self._writer.is_closing():
            raise NotRunning("the command has ended")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise NotRunning(f"cannot write to the command: {exc}") from exc

    async def resize(self, height: int, width: int) -> None:
        if self._ended:
            return
        with contextlib.suppress(ContainerRuntimeError):
            await self._call(self._api.exec_resize, self.exec_id, height=height, width=width)

    async def exit_code(self) -> int | None:
        result: int | None = await self._call(
            _wait_ended, self._api, self.exec_id, EXIT_WAIT_SECONDS, what=self.exec_id
        )
        return result

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        await self._call(_hang_up, self._api, self.exec_id)
        await self._call(self._raw.close)


async def open_docker_exec(
    call: Call,
    api: Any,
    container_id: str,
    command: list[str],
    *,
    height: int,
    width: int,
    term: str,
) -> DockerExec:
    """Create and start the exec; its TTY gets `height` x `width` as soon as it exists."""
    created = await call(
        api.exec_create,
        container_id,
        command,
        stdin=True,
        tty=True,
        environment={"TERM": term},
        what=container_id,
    )
    exec_id = str(created["Id"])
    # Before 1.42 the engine takes no size with `start`, and a resize waits until the
    # process exists: sent alongside the start, it lands the moment the TTY does.
    resizing = asyncio.ensure_future(_initial_resize(call, api, exec_id, height, width))
    try:
        raw = await call(api.exec_start, exec_id, tty=True, socket=True, what=container_id)
    except BaseException:
        resizing.cancel()
        raise
    sock = cast(socket.socket, getattr(raw, "_sock", raw))
    try:
        reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
    except OSError as exc:
        resizing.cancel()
        await call(raw.close)
        raise ContainerRuntimeError(f"cannot attach to the exec: {exc}") from exc
    if not await resizing:
        # The resize reached the engine before the TTY existed (a race the engine
        # loses under load): the TTY exists now that the start answered.
        await _initial_resize(call, api, exec_id, height, width)
    return DockerExec(call, api, exec_id, raw, reader, writer)


async def _initial_resize(call: Call, api: Any, exec_id: str, height: int, width: int) -> bool:
    """Whether the TTY took the size. A command that ends at once (or never starts)
    cannot be resized: not an error."""
    try:
        await call(api.exec_resize, exec_id, height=height, width=width)
    except ContainerRuntimeError:
        return False
    return True
