"""Agent test fixtures: a real dockerd, an in-process agent on 127.0.0.1:0, and
containers labelled with this session's id (removed afterwards)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import grpc.aio
import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from agent.config import AgentConfig, NodeIdentity
from agent.daemon import RunningAgent, running_agent
from agent.event_loop import new_event_loop
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.conftest import TEST_IMAGE
from tests.docker_support import remove_labelled_containers

SESSION = uuid.uuid4().hex[:12]
SESSION_LABEL = "encedeus.test-session"
SECRET = "test-node-secret-0123456789abcdef0123456789"
AUTH = (("authorization", f"Bearer {SECRET}"),)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The agent's tests run on the agent's own loop (uvloop: agent/event_loop.py)."""
    return {"uvloop": new_event_loop}


@pytest.fixture(scope="session", autouse=True)
def _session_cleanup() -> Iterator[None]:
    yield
    remove_labelled_containers({SESSION_LABEL: SESSION})


def make_config(data_dir: Path, node_id: str, **overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        "node_id": node_id,
        "node_secret": SECRET,
        "grpc": {"host": "127.0.0.1", "port": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "sftp": {"host": "127.0.0.1", "port": 0},
        "labels": {SESSION_LABEL: SESSION},
        "port_range": {"start": 30000, "end": 30999},
        **overrides,
    }
    return AgentConfig.model_validate(values)


@pytest.fixture
def agent_config(tmp_path: Path) -> AgentConfig:
    return make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}")


@contextlib.asynccontextmanager
async def agent_in_background(config: AgentConfig) -> AsyncIterator[RunningAgent]:
    """Run the agent in its own task (fixtures set up and tear down in different tasks,
    which a TaskGroup does not allow)."""
    identity = NodeIdentity(node_id=config.node_id, node_secret=config.node_secret)
    started: asyncio.Future[RunningAgent] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def run() -> None:
        async with running_agent(config, identity) as running:
            started.set_result(running)
            await stop.wait()

    task = asyncio.create_task(run())
    waiters: set[asyncio.Future[Any]] = {task, started}
    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the startup error
    try:
        yield started.result()
    finally:
        stop.set()
        await task
        await asyncio.to_thread(remove_labelled_containers, {"encedeus.node": config.node_id})


@pytest.fixture
async def agent(agent_config: AgentConfig) -> AsyncIterator[RunningAgent]:
    async with agent_in_background(agent_config) as running:
        yield running


@pytest.fixture
async def stub(agent: RunningAgent) -> AsyncIterator[pb_grpc.AgentAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel:
        yield pb_grpc.AgentStub(channel)


def server_id() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


def spec(command: str, **fields: Any) -> pb.ServerSpec:
    """A busybox server running `sh -c command`, without network unless ports are given."""
    fields.setdefault("network_disabled", "ports" not in fields)
    return pb.ServerSpec(id=server_id(), image=TEST_IMAGE, command=["sh", "-c", command], **fields)


ECHO = 'while read l; do [ "$l" = stop ] && exit 0; echo "got $l"; done'


async def wait_for_event(
    events: AsyncIterator[pb.WatchEvent],
    server: str,
    kind: pb.LifecycleKind.ValueType,
    timeout: float = 20.0,
) -> pb.LifecycleEvent:
    """The next lifecycle event of `kind` for `server` on a Watch stream."""
    async with asyncio.timeout(timeout):
        async for event in events:
            if event.HasField("lifecycle"):
                lifecycle = event.lifecycle
                if lifecycle.server_id == server and lifecycle.kind == kind:
                    return lifecycle
    raise AssertionError("watch stream ended")


def allow_known_calls(detector: BlockBuster) -> None:
    """Calls blockbuster flags that do not block the loop here."""
    # Reading a module's source for a traceback or a log line is not our I/O.
    detector.functions["os.stat"].can_block_in("linecache.py", {"checkcache", "updatecache"})
    # A download's sendfile goes to a socket it has checked is non-blocking
    # (agent/files/download.py): it returns EAGAIN rather than wait.
    detector.functions["os.sendfile"].can_block_in("agent/files/download.py", {"on_writable"})
    # Popen reads its error pipe until the child's exec (vfork: at once), as asyncio's
    # own subprocess_exec does (which blockbuster allows itself).
    detector.functions["os.read"].can_block_in("common/subprocesses.py", {"_start"})
    # When the process's last grpc.aio object goes (the last channel of a test that
    # ran its own agents), grpc shuts its aio layer down and joins its poller thread
    # on the loop: grpc's own, brief, and not something an agent does while serving.
    # grpc's Cython frames are not on the Python stack: the join itself is recognised.
    for name in ("threading.Lock.acquire", "threading.Lock.acquire_lock"):
        detector.functions[name].can_block_in("threading.py", _JoinOfGrpcPoller())


class _JoinOfGrpcPoller:
    """Contains `_wait_for_tstate_lock` only while that frame joins grpc's aio poller
    thread (named after its target, `_poll_wrapper`): every other join still fails."""

    def __contains__(self, name: object) -> bool:
        if name != "_wait_for_tstate_lock":
            return False
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "_wait_for_tstate_lock":
            frame = frame.f_back
        thread = frame.f_locals.get("self") if frame is not None else None
        return isinstance(thread, threading.Thread) and thread.name.endswith("(_poll_wrapper)")

    def __iter__(self) -> Iterator[str]:
        return iter(("_wait_for_tstate_lock",))


@pytest.fixture
def no_blocking_calls() -> Iterator[None]:
    """Fail on blocking calls (file, socket, sleep...) made on the event loop thread."""
    with blockbuster_ctx() as detector:
        allow_known_calls(detector)
        yield
