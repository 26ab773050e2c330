"""The agent tests' blocking guard: grpc's own join of its aio poller thread (when the
process's last grpc.aio object goes) is allowed; any other join on the loop is not."""

from __future__ import annotations

import asyncio
import gc
import threading

import grpc.aio
import pytest
from blockbuster import BlockingError, blockbuster_ctx

from tests.agent.conftest import allow_known_calls


async def test_dropping_the_last_grpc_channel_on_the_loop_is_allowed() -> None:
    with blockbuster_ctx() as detector:
        allow_known_calls(detector)
        channel = grpc.aio.insecure_channel("127.0.0.1:9")
        await channel.close(None)
        del channel
        gc.collect()  # grpc shuts its aio layer down and joins its poller thread here
        await asyncio.sleep(0)


async def test_joining_another_thread_on_the_loop_still_fails() -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="plain")
    worker.start()
    try:
        with blockbuster_ctx() as detector:
            allow_known_calls(detector)
            with pytest.raises(BlockingError):
                worker.join(timeout=0.5)
    finally:
        release.set()
        worker.join()
