from __future__ import annotations

import asyncio
import signal
import sys

from common.subprocesses import stop_process

# Ignores SIGTERM and says so once it does, then sleeps.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print(1, flush=True); time.sleep(60)"
)


async def test_a_process_that_ends_on_the_signal_is_not_killed() -> None:
    process = await asyncio.create_subprocess_exec("sleep", "60")
    await stop_process(process, signal.SIGTERM, 10)
    assert process.returncode == -signal.SIGTERM


async def test_a_process_that_ignores_the_signal_is_killed_after_the_grace() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUBBORN, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    await process.stdout.readline()  # the handler is in place
    await stop_process(process, signal.SIGTERM, 0.2)
    assert process.returncode == -signal.SIGKILL


async def test_an_ended_process_is_left_alone() -> None:
    process = await asyncio.create_subprocess_exec("true")
    await process.wait()
    await stop_process(process, signal.SIGTERM, 0.2)
    assert process.returncode == 0
