"""One contract for :class:`ContainerRuntime`, run against the in-memory fake
(tests/agent/fake_runtime.py) and the real :class:`DockerRuntime` on the local
dockerd: the fake may stand in for Docker only as far as it behaves the same."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from agent.runtime.docker_runtime import DockerRuntime
from agent.runtime.protocol import ContainerRuntime
from agent.runtime.types import (
    AlreadyExists,
    ContainerEvent,
    ContainerSpec,
    ImageNotFound,
    NotFound,
    NotRunning,
)
from tests.agent.conftest import SESSION, SESSION_LABEL
from tests.agent.fake_runtime import FakeContainerRuntime
from tests.conftest import TEST_IMAGE
from tests.docker_support import remove_labelled_containers

RUN_LABEL = "encedeus.contract-run"
MISSING_IMAGE = "encedeus/not-here:never"


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.docker)])
async def runtime(request: pytest.FixtureRequest, run_id: str) -> AsyncIterator[ContainerRuntime]:
    """The same Protocol, fake or real."""
    if request.param == "fake":
        yield FakeContainerRuntime(images={TEST_IMAGE})
        return
    real = DockerRuntime(threads=2)
    try:
        yield real
    finally:
        await real.close()
        await asyncio.to_thread(remove_labelled_containers, {RUN_LABEL: run_id})


def _spec(run_id: str) -> ContainerSpec:
    return ContainerSpec(
        name=f"contract-{uuid.uuid4().hex[:12]}",
        image=TEST_IMAGE,
        command=["sleep", "60"],
        labels={SESSION_LABEL: SESSION, RUN_LABEL: run_id},
        network_disabled=True,
    )


@contextlib.contextmanager
def _events(runtime: ContainerRuntime, run_id: str) -> Iterator[asyncio.Queue[ContainerEvent]]:
    """The run's container events, delivered on the event loop (the real runtime
    calls back from its own thread)."""
    queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def deliver(event: ContainerEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    subscription = runtime.subscribe({RUN_LABEL: run_id}, deliver)
    try:
        yield queue
    finally:
        subscription.close()


async def _next(queue: asyncio.Queue[ContainerEvent], action: str) -> ContainerEvent:
    async with asyncio.timeout(10):
        while (event := await queue.get()).action != action:
            pass
    return event


async def test_images_are_never_pulled(runtime: ContainerRuntime, run_id: str) -> None:
    assert await runtime.image_exists(TEST_IMAGE)
    assert not await runtime.image_exists(MISSING_IMAGE)
    with pytest.raises(ImageNotFound):
        await runtime.create(ContainerSpec(name=f"c-{run_id}", image=MISSING_IMAGE))


async def test_create_start_and_names_taken_once(runtime: ContainerRuntime, run_id: str) -> None:
    spec = _spec(run_id)
    created = await runtime.create(spec)
    assert (created.status, created.running) == ("created", False)
    assert created.labels[RUN_LABEL] == run_id
    with pytest.raises(AlreadyExists):
        await runtime.create(spec)
    started = await runtime.start(created.id)  # the container as it is once started
    assert (started.id, started.running) == (created.id, True)
    assert started.pid > 0
    again = await runtime.start(created.id)  # a no-op when running
    assert again.started_at_ms == started.started_at_ms
    running = await runtime.inspect(created.id)
    assert running.running
    assert running.started_at_ms == started.started_at_ms > 0


async def test_a_killed_container_dies_with_its_signal_s_code(
    runtime: ContainerRuntime, run_id: str
) -> None:
    with _events(runtime, run_id) as events:
        await _kill_and_follow(runtime, run_id, events)


async def _kill_and_follow(
    runtime: ContainerRuntime, run_id: str, events: asyncio.Queue[ContainerEvent]
) -> None:
    info = await runtime.create(_spec(run_id))
    ended = asyncio.Event()
    attachment = await runtime.attach(info.id, lambda _stream, _data: None, ended.set)
    await runtime.start(info.id)
    assert (await _next(events, "start")).container_id == info.id
    await runtime.signal(info.id, "SIGKILL")
    died = await _next(events, "die")
    assert (died.container_id, died.exit_code) == (info.id, 137)
    exited = await runtime.inspect(info.id)
    assert (exited.running, exited.exit_code) == (False, 137)
    assert exited.finished_at_ms >= exited.started_at_ms
    async with asyncio.timeout(10):
        await ended.wait()  # the streams close with the container
    with pytest.raises(NotRunning):
        await attachment.write(b"late\n")
    with pytest.raises(NotRunning):
        await runtime.signal(info.id, "SIGTERM")


async def test_removal_is_forceful_and_idempotent(runtime: ContainerRuntime, run_id: str) -> None:
    info = await runtime.create(_spec(run_id))
    await runtime.start(info.id)
    await runtime.remove(info.id)
    with pytest.raises(NotFound):
        await runtime.inspect(info.id)
    await runtime.remove(info.id)


async def test_containers_are_listed_by_label(runtime: ContainerRuntime, run_id: str) -> None:
    first = await runtime.create(_spec(run_id))
    second = await runtime.create(_spec(run_id))
    listed = await runtime.list_containers({RUN_LABEL: run_id})
    assert {c.id for c in listed} == {first.id, second.id}
    assert await runtime.list_containers({RUN_LABEL: "nobody"}) == []
