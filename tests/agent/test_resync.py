"""The agent's picture after gaps in what it saw: containers removed while the engine's
event stream was down, and an agent restarted with more labels in its config."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import docker
import pytest

from agent.config import NodeIdentity
from agent.daemon import RunningAgent, running_agent
from agent.runtime import ContainerEvent, DockerRuntime, EventSubscription
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import (
    AUTH,
    ECHO,
    SESSION,
    SESSION_LABEL,
    make_config,
    spec,
    wait_for_event,
)
from tests.docker_support import remove_labelled_containers

pytestmark = pytest.mark.docker


class EventGap:
    """Wraps DockerRuntime.subscribe: while `down`, engine events are lost, as when the
    stream is disconnected; `reconnect()` then delivers the resync a reconnection does."""

    def __init__(self) -> None:
        self.down = False
        self.deliver: Callable[[ContainerEvent], None] | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_subscribe = DockerRuntime.subscribe

        def subscribe(
            runtime: DockerRuntime,
            labels: Mapping[str, str],
            on_event: Callable[[ContainerEvent], None],
        ) -> EventSubscription:
            self.deliver = on_event
            return real_subscribe(runtime, labels, self._unless_down)

        monkeypatch.setattr(DockerRuntime, "subscribe", subscribe)

    def _unless_down(self, event: ContainerEvent) -> None:
        if not self.down and self.deliver is not None:
            self.deliver(event)

    def reconnect(self) -> None:
        assert self.deliver is not None
        self.deliver(ContainerEvent("", "resync", {}, 0))


def remove_container(container_id: str) -> None:
    client = docker.from_env()
    try:
        client.api.remove_container(container_id, force=True)
    finally:
        client.close()


@pytest.fixture
def gap(monkeypatch: pytest.MonkeyPatch) -> EventGap:
    """Installed before the agent fixture starts the agent."""
    gap = EventGap()
    gap.install(monkeypatch)
    return gap


@pytest.mark.usefixtures("no_blocking_calls")
async def test_container_removed_while_events_were_lost_is_forgotten(
    gap: EventGap, agent: RunningAgent, stub: pb_grpc.AgentAsyncStub
) -> None:
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    gone, kept = spec(ECHO), spec(ECHO)
    for s in (gone, kept):
        await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    container_id = agent.supervisor.get(gone.id).container_id

    gap.down = True
    await asyncio.to_thread(remove_container, container_id)
    gap.reconnect()

    await wait_for_event(events, gone.id, pb.LIFECYCLE_KIND_REMOVED, timeout=10)
    listed = await stub.ListServers(pb.ListServersRequest(), metadata=AUTH)
    assert [(s.spec.id, s.status.state) for s in listed.servers] == [
        (kept.id, pb.SERVER_STATE_RUNNING)
    ]
    watch.cancel()


async def test_restart_with_more_labels_reattaches_its_containers(tmp_path: Path) -> None:
    # Without no_blocking_calls: the agents' gRPC servers are torn down inside the test.
    node = f"node-{uuid.uuid4().hex[:8]}"
    before = make_config(tmp_path / "skyhook", node)
    after = make_config(tmp_path / "skyhook", node, labels={SESSION_LABEL: SESSION, "team": "blue"})
    identity = NodeIdentity(node_id=node, node_secret=before.node_secret)
    s = spec(ECHO)
    try:
        async with running_agent(before, identity) as agent:
            created = await agent.supervisor.create(s, start=True)
            container_id = created.container_id

        async with running_agent(after, identity) as agent:
            adopted = agent.supervisor.get(s.id)
            assert adopted.container_id == container_id
            assert adopted.status().state == pb.SERVER_STATE_RUNNING
            # Watched too: a stop is seen through the engine's events.
            stopped = await agent.supervisor.stop(s.id, timeout_seconds=1)
            assert stopped.status().state == pb.SERVER_STATE_OFFLINE
            # New containers carry the new labels.
            fresh = await agent.supervisor.create(spec(ECHO))
            assert fresh.info.labels["team"] == "blue"
    finally:
        await asyncio.to_thread(remove_labelled_containers, {"encedeus.node": node})
