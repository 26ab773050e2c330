"""Starting and stopping child processes on the event loop, on asyncio's loop and on
uvloop (the agent's): `spawn` behaves as asyncio.create_subprocess_exec, and never
runs the interpreter in the forked child."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from common.subprocesses import DEVNULL, PIPE, spawn, stop_process

# Ignores SIGTERM and says so once it does, then sleeps.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(1, flush=True); time.sleep(60)"
)
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Runs a coroutine to its end on a fresh loop of each kind."""

    def on_loop(main: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            return runner.run(main)

    return on_loop


def test_a_process_that_ends_on_the_signal_is_not_killed(run: Callable[..., Any]) -> None:
    async def main() -> int | None:
        process = await spawn("sleep", "60")
        await stop_process(process, signal.SIGTERM, 10)
        return process.returncode

    assert run(main()) == -signal.SIGTERM


def test_a_process_that_ignores_the_signal_is_killed_after_the_grace(
    run: Callable[..., Any],
) -> None:
    async def main() -> int | None:
        process = await spawn(sys.executable, "-c", STUBBORN, stdout=PIPE)
        assert process.stdout is not None
        await process.stdout.readline()  # the handler is in place
        await stop_process(process, signal.SIGTERM, 0.2)
        return process.returncode

    assert run(main()) == -signal.SIGKILL


def test_an_ended_process_is_left_alone(run: Callable[..., Any]) -> None:
    async def main() -> int | None:
        process = await spawn("true")
        await process.wait()
        await stop_process(process, signal.SIGTERM, 0.2)
        return process.returncode

    assert run(main()) == 0


def test_pipes_arguments_directory_and_environment(run: Callable[..., Any], tmp_path: Path) -> None:
    async def main() -> tuple[bytes, bytes, int | None]:
        process = await spawn(
            "sh", "-c", 'read line; echo "$line $1 $(pwd) $GREETING"; echo oops >&2; exit 3',
            "sh", "arg",
            stdin=PIPE, stdout=PIPE, stderr=PIPE, cwd=tmp_path, env={"GREETING": "hi"},
        )  # fmt: skip
        out, err = await process.communicate(b"line\n")
        return out, err, process.returncode

    out, err, code = run(main())
    assert out.decode() == f"line arg {tmp_path} hi\n"
    assert (err, code) == (b"oops\n", 3)


def test_output_to_a_file_descriptor_and_a_pipeline(run: Callable[..., Any]) -> None:
    async def main() -> bytes:
        read_end, write_end = os.pipe()
        try:
            first = await spawn("echo", "through", stdin=DEVNULL, stdout=write_end)
            second = await spawn("tr", "a-z", "A-Z", stdin=read_end, stdout=PIPE)
        finally:
            os.close(read_end)
            os.close(write_end)
        out, _ = await second.communicate()
        assert await first.wait() == 0
        return out

    assert run(main()) == b"THROUGH\n"


def test_a_missing_program_raises_as_asyncio_does(run: Callable[..., Any]) -> None:
    with pytest.raises(FileNotFoundError):
        run(spawn("/nonexistent/program"))


_PROBE: list[int] = []  # the write end a forked child's at-fork hook reports to


def _report_fork_in_child() -> None:
    if _PROBE:
        os.write(_PROBE[0], b"x")


os.register_at_fork(after_in_child=_report_fork_in_child)


def children_that_ran_at_fork_hooks(start: Callable[[], Coroutine[Any, Any, Any]]) -> bytes:
    """What the interpreter's at-fork hooks reported while `start` ran, on uvloop."""
    read_end, write_end = os.pipe()
    _PROBE.append(write_end)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(start())
    finally:
        _PROBE.clear()
        os.close(write_end)
    with os.fdopen(read_end, "rb") as reports:
        return reports.read()


def test_no_python_runs_in_the_child_before_its_exec() -> None:
    """uvloop's own spawn runs the at-fork hooks in the child (which crashed children
    of the many-threaded agent); spawn's children go straight to their exec."""

    async def by_uvloop() -> None:
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()

    async def by_spawn() -> None:
        process = await spawn("true")
        await process.wait()

    assert children_that_ran_at_fork_hooks(by_uvloop) == b"x"  # the hazard is real
    assert children_that_ran_at_fork_hooks(by_spawn) == b""
