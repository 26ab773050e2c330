"""Node liveness (pure state machine) and the agent pool's Watch handling, with a
fake agent client checked against the AgentClient Protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

from controlplane.agents import (
    AgentClient,
    AgentError,
    AgentPool,
    NodeEndpoint,
    NodeLiveness,
    NodeObservation,
    NodeSignal,
    Transition,
)
from protos import agent_pb2 as pb


def test_silent_node_goes_down_and_comes_back() -> None:
    liveness = NodeLiveness(grace_seconds=20)
    liveness.watch("n", now=0)
    assert liveness.state("n") == "unknown"
    assert liveness.heard("n", now=1) == [Transition("n", "unknown", "ready", 1)]
    assert liveness.heard("n", now=2) == []
    assert liveness.tick(now=21) == []
    assert liveness.tick(now=22.5) == [Transition("n", "ready", "down", 22.5)]
    assert liveness.tick(now=30) == []
    assert liveness.heard("n", now=31) == [Transition("n", "down", "ready", 31)]
    assert liveness.last_heard("n") == 31


def test_node_that_never_reports_goes_down_after_grace() -> None:
    liveness = NodeLiveness(grace_seconds=5)
    liveness.watch("n", now=100)
    assert liveness.tick(now=104) == []
    assert liveness.tick(now=106) == [Transition("n", "unknown", "down", 106)]
    assert liveness.last_heard("n") is None


class FakeAgent:
    """Streams the scripted Watch events, then fails like a broken connection."""

    def __init__(self, events: list[pb.WatchEvent]) -> None:
        self.events = events
        self.watches = 0
        self.closed = False

    async def get_node_info(self) -> pb.NodeInfo:
        return pb.NodeInfo(node_id="n1", port_range_start=1, port_range_end=2)

    async def watch(self, heartbeat_interval_ms: int) -> AsyncIterator[pb.WatchEvent]:
        self.watches += 1
        for event in self.events:
            yield event
        raise AgentError("unavailable", "connection reset")

    async def check_image(
        self, image: str, auth: pb.RegistryAuth | None, timeout_ms: int
    ) -> pb.CheckImageResponse:
        return pb.CheckImageResponse()

    async def delete_volume(self, volume_id: str) -> bool:
        return False

    async def send_volume(
        self, volume_id: str, target_address: str, token: str
    ) -> AsyncIterator[pb.TransferProgress]:
        raise AgentError("unimplemented", "not used by the pool")
        yield pb.TransferProgress()

    async def close(self) -> None:
        self.closed = True

    # The rest of the Protocol is not used by the pool's watch loop.
    async def create_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        raise NotImplementedError

    async def apply_routes(self, table: pb.RouteTable) -> int:
        raise NotImplementedError

    async def recreate_server(self, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        raise NotImplementedError

    async def start_server(self, server_id: str) -> pb.Server:
        raise NotImplementedError

    async def stop_server(self, server_id: str, timeout_seconds: int = 0) -> pb.Server:
        raise NotImplementedError

    async def restart_server(self, server_id: str) -> pb.Server:
        raise NotImplementedError

    async def reinstall_server(self, server_id: str) -> pb.Server:
        raise NotImplementedError

    async def kill_server(self, server_id: str, signal: str = "") -> pb.Server:
        raise NotImplementedError

    async def remove_server(self, server_id: str, *, delete_data: bool = False) -> bool:
        raise NotImplementedError

    async def get_server(self, server_id: str) -> pb.Server:
        raise NotImplementedError

    async def list_servers(self, labels: Mapping[str, str]) -> list[pb.Server]:
        raise NotImplementedError

    async def send_command(self, server_id: str, line: str) -> None:
        raise NotImplementedError

    async def get_logs(
        self, server_id: str, *, tail: int, follow: bool
    ) -> AsyncIterator[pb.LogLine]:
        raise NotImplementedError
        yield pb.LogLine()

    async def get_stats(self, server_id: str) -> pb.ServerStats:
        raise NotImplementedError

    async def create_backup(self, request: pb.CreateBackupRequest) -> pb.BackupResult:
        raise NotImplementedError

    async def restore_backup(self, request: pb.RestoreBackupRequest) -> pb.RestoreBackupResponse:
        raise NotImplementedError

    async def delete_backup(self, request: pb.DeleteBackupRequest) -> bool:
        raise NotImplementedError


def _heartbeat(*servers: pb.ServerStatus) -> pb.WatchEvent:
    return pb.WatchEvent(
        heartbeat=pb.Heartbeat(
            host=pb.HostStats(cpu_percent=12.5),
            servers=list(servers),
            stats=[pb.ServerStats(id=s.id, memory_bytes=1024) for s in servers],
        )
    )


async def test_pool_records_heartbeats_and_reconnects() -> None:
    running = pb.ServerStatus(id="r1", state=pb.SERVER_STATE_RUNNING)
    exited = pb.LifecycleEvent(
        server_id="r1",
        kind=pb.LIFECYCLE_KIND_EXITED,
        exit_code=3,
        status=pb.ServerStatus(id="r1", state=pb.SERVER_STATE_OFFLINE, exited=True, exit_code=3),
    )
    fake = FakeAgent([_heartbeat(running), pb.WatchEvent(lifecycle=exited)])
    client: AgentClient = fake  # the fake must satisfy the Protocol
    signals: list[NodeSignal] = []
    pool = AgentPool(
        client_factory=lambda endpoint: client,
        grace_seconds=0.5,
        reconnect_initial=0.01,
        reconnect_max=0.02,
    )
    pool.add_listener(signals.append)
    await pool.start()
    try:
        await pool.sync([NodeEndpoint("n1", "127.0.0.1:1", "secret")])
        async with asyncio.timeout(5):
            while fake.watches < 3:
                await asyncio.sleep(0.01)
        observation = pool.observation("n1")
        assert observation is not None
        assert observation.info is not None
        assert observation.host is not None
        assert observation.host.cpu_percent == 12.5
        assert observation.stats["r1"].memory_bytes == 1024
        assert pool.state("n1") == "ready"
        kinds = [s.kind for s in signals]
        assert kinds[:3] == ["up", "changed", "lifecycle"]
        lifecycle = next(s.lifecycle for s in signals if s.kind == "lifecycle")
        assert lifecycle is not None
        assert lifecycle.exit_code == 3
        await pool.sync([])  # the node was deleted
        assert fake.closed
        assert pool.observation("n1") is None
    finally:
        await pool.close()


async def _down(pool: AgentPool) -> NodeObservation:
    """Watch node n1 until it is down; its observation."""
    await pool.sync([NodeEndpoint("n1", "127.0.0.1:1", "secret")])
    async with asyncio.timeout(5):
        while pool.state("n1") != "down":
            await asyncio.sleep(0.02)
    observation = pool.observation("n1")
    assert observation is not None
    return observation


async def test_pool_marks_a_silent_node_down() -> None:
    class Silent(FakeAgent):
        async def watch(self, heartbeat_interval_ms: int) -> AsyncIterator[pb.WatchEvent]:
            yield _heartbeat()
            await asyncio.sleep(3600)

    signals: list[NodeSignal] = []
    pool = AgentPool(client_factory=lambda endpoint: Silent([]), grace_seconds=0.2)
    pool.add_listener(signals.append)
    await pool.start()
    try:
        observation = await _down(pool)
        assert observation.servers is None  # nothing is known about a down node
        assert [s.kind for s in signals if s.kind in ("up", "down")] == ["up", "down"]
    finally:
        await pool.close()


async def test_unchanged_heartbeats_keep_the_servers_across_lifecycle_and_down() -> None:
    running = pb.ServerStatus(id="r1", state=pb.SERVER_STATE_RUNNING)
    exited = pb.LifecycleEvent(
        server_id="r1",
        kind=pb.LIFECYCLE_KIND_EXITED,
        status=pb.ServerStatus(id="r1", state=pb.SERVER_STATE_OFFLINE, exited=True),
    )
    unchanged = pb.WatchEvent(heartbeat=pb.Heartbeat(servers_unchanged=True))
    back = asyncio.Event()

    class Lapsing(FakeAgent):
        """Shows r1, reports its exit, falls silent past the grace, then says the
        servers are unchanged (as an agent that was stalled, not restarted)."""

        async def watch(self, heartbeat_interval_ms: int) -> AsyncIterator[pb.WatchEvent]:
            yield _heartbeat(running)
            yield pb.WatchEvent(lifecycle=exited)
            yield unchanged
            await back.wait()
            yield unchanged
            await asyncio.sleep(3600)

    signals: list[NodeSignal] = []
    pool = AgentPool(client_factory=lambda endpoint: Lapsing([]), grace_seconds=0.2)
    pool.add_listener(signals.append)
    await pool.start()
    try:
        observation = await _down(pool)
        assert observation.servers is None
        back.set()
        async with asyncio.timeout(5):
            while observation.servers is None:
                await asyncio.sleep(0.01)
        # The exit the lifecycle event reported stands: "unchanged" is the stream's view.
        assert observation.servers["r1"].state == pb.SERVER_STATE_OFFLINE
        kinds = [s.kind for s in signals]
        assert kinds == ["up", "changed", "lifecycle", "down", "up", "changed"]
    finally:
        await pool.close()


async def test_an_unchanged_heartbeat_first_on_a_stream_shows_nothing() -> None:
    fake = FakeAgent([pb.WatchEvent(heartbeat=pb.Heartbeat(servers_unchanged=True))])
    pool = AgentPool(client_factory=lambda endpoint: fake, reconnect_initial=0.01)
    await pool.start()
    try:
        await pool.sync([NodeEndpoint("n1", "127.0.0.1:1", "secret")])
        async with asyncio.timeout(5):
            while fake.watches < 2:
                await asyncio.sleep(0.01)
        observation = pool.observation("n1")
        assert observation is not None
        assert observation.servers is None  # not an empty node: nothing is known
    finally:
        await pool.close()
