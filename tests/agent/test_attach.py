"""The Docker attach socket is read on the event loop: output reaches its callback on
the loop's thread (no hand-over between threads on a console line's way), split by
stream, and a callback that raises does not cut the output."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator

import pytest

from agent.runtime.docker_runtime import DockerRuntime
from agent.runtime.types import ContainerSpec, NotRunning
from tests.agent.conftest import SESSION, SESSION_LABEL
from tests.conftest import TEST_IMAGE
from tests.docker_support import remove_labelled_containers

pytestmark = pytest.mark.docker
RUN_LABEL = "encedeus.attach-run"
ECHO = 'while read l; do echo "out $l"; echo "err $l" >&2; done'


@pytest.fixture
async def runtime() -> AsyncIterator[tuple[DockerRuntime, str]]:
    run_id = uuid.uuid4().hex[:12]
    real = await asyncio.to_thread(DockerRuntime, threads=2)  # reads the Docker config
    try:
        yield real, run_id
    finally:
        await real.close()
        await asyncio.to_thread(remove_labelled_containers, {RUN_LABEL: run_id})


def _echo(run_id: str) -> ContainerSpec:
    return ContainerSpec(
        name=f"attach-{uuid.uuid4().hex[:12]}",
        image=TEST_IMAGE,
        command=["sh", "-c", ECHO],
        labels={SESSION_LABEL: SESSION, RUN_LABEL: run_id},
        network_disabled=True,
    )


@pytest.mark.usefixtures("no_blocking_calls")
async def test_output_reaches_the_callback_on_the_loop_thread(
    runtime: tuple[DockerRuntime, str],
) -> None:
    docker, run_id = runtime
    info = await docker.create(_echo(run_id))
    loop_thread = threading.get_ident()
    seen: list[tuple[str, bytes, bool]] = []
    ended, got_two = asyncio.Event(), asyncio.Event()

    def on_output(stream: str, data: bytes) -> None:
        seen.append((stream, data, threading.get_ident() == loop_thread))
        if b"out two" in b"".join(data for _, data, _ in seen):
            got_two.set()

    def on_end() -> None:
        assert threading.get_ident() == loop_thread
        ended.set()

    attachment = await docker.attach(info.id, on_output, on_end)
    await docker.start(info.id)
    await attachment.write(b"one\n")
    await attachment.write(b"two\n")
    async with asyncio.timeout(20):
        await got_two.wait()
    assert all(on_loop for _, _, on_loop in seen)
    stdout = b"".join(data for stream, data, _ in seen if stream == "stdout")
    assert stdout.startswith(b"out one\nout two\n")
    async with asyncio.timeout(20):
        while b"err two\n" not in b"".join(d for s, d, _ in seen if s == "stderr"):
            await asyncio.sleep(0.05)
    attachment.close()
    assert attachment.closed
    async with asyncio.timeout(10):
        await ended.wait()  # on_end follows close(), once
    with pytest.raises(NotRunning):
        await attachment.write(b"late\n")


async def test_a_callback_that_raises_does_not_cut_the_output(
    runtime: tuple[DockerRuntime, str],
) -> None:
    # (Not under no_blocking_calls: the dev log renderer reads source files for the
    # logged traceback.)
    docker, run_id = runtime
    info = await docker.create(_echo(run_id))
    seen, got_two = bytearray(), asyncio.Event()

    def on_output(stream: str, data: bytes) -> None:
        if stream != "stdout":
            return
        seen.extend(data)
        if b"out two" in seen:
            got_two.set()
        raise RuntimeError("a consumer's bug")  # logged; the output goes on

    attachment = await docker.attach(info.id, on_output, lambda: None)
    await docker.start(info.id)
    await attachment.write(b"one\n")
    async with asyncio.timeout(20):
        while b"out one" not in seen:
            await asyncio.sleep(0.05)
    await attachment.write(b"two\n")
    async with asyncio.timeout(20):
        await got_two.wait()
    assert not attachment.closed
    attachment.close()
