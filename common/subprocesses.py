"""Child processes on the event loop: starting one (`spawn`, on any loop) and ending
one (`stop_process`: a signal, a grace period, then SIGKILL), the one way both
programs do each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
from asyncio.base_subprocess import BaseSubprocessTransport
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

File = int | IO[Any] | None  # what a child's stdin, stdout or stderr may be
PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL


class _PopenTransport(BaseSubprocessTransport):
    """asyncio's subprocess transport, its child started by `subprocess.Popen` (on the
    loop, as asyncio's own: Popen returns once the child has exec'd)."""

    def _start(
        self,
        args: str | bytes | Sequence[str | bytes],
        shell: bool,
        stdin: File,
        stdout: File,
        stderr: File,
        bufsize: int,
        **kwargs: Any,
    ) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 (an argv list, never a shell)
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs,
        )  # fmt: skip


async def spawn(
    program: str | Path,
    *args: str,
    stdin: File = None,
    stdout: File = None,
    stderr: File = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    start_new_session: bool = False,
) -> asyncio.subprocess.Process:
    """`asyncio.create_subprocess_exec(program, *args, ...)` on whatever loop runs.

    The child is forked and exec'd by `subprocess.Popen` (vfork on Linux: nothing of
    the interpreter runs in the child), its exit awaited by a thread in `waitpid`, as
    asyncio's own default child watcher does. uvloop, the agent's loop, forks with
    libuv and runs the interpreter's at-fork hooks in the child of a process with
    many threads, which can crash the child before its exec (uvloop issue #749; a
    restic child of the agent died of SIGSEGV so)."""
    loop = asyncio.get_running_loop()
    protocol = asyncio.subprocess.SubprocessStreamProtocol(limit=2**16, loop=loop)
    waiter = loop.create_future()
    transport = _PopenTransport(
        loop, protocol, [os.fspath(program), *args], False, stdin, stdout, stderr, 0,
        waiter=waiter, cwd=cwd, env=env, start_new_session=start_new_session,
    )  # fmt: skip
    _await_exit(loop, transport)
    try:
        await waiter  # the pipes connected to the loop
    except BaseException:
        transport.close()
        await transport._wait()
        raise
    return asyncio.subprocess.Process(transport, protocol, loop)


def _await_exit(loop: asyncio.AbstractEventLoop, transport: BaseSubprocessTransport) -> None:
    pid = transport.get_pid()
    assert pid is not None

    def wait() -> None:
        try:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else: its status is gone
            code = 255
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(transport._process_exited, code)

    threading.Thread(target=wait, name=f"waitpid-{pid}", daemon=True).start()


async def stop_process(
    process: asyncio.subprocess.Process, stop_signal: int, grace_seconds: float
) -> None:
    """Send `stop_signal`, wait up to `grace_seconds` for the process to end, then
    SIGKILL it and wait. A process that has ended already (or ends meanwhile) is
    left alone."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(stop_signal)
    try:
        async with asyncio.timeout(grace_seconds):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
