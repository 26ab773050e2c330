"""Ending a child process, the one way both programs do it: a signal, a grace
period, then SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib


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
