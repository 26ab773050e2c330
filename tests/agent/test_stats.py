"""Stats from cgroup files: CPU moves when a container burns it, memory stays under
the limit, and an OOM kill is reported as such."""

from __future__ import annotations

import asyncio

import pytest

from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, spec, wait_for_event

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]
MIB = 1024 * 1024


async def test_cpu_moves_and_memory_stays_under_limit(stub: pb_grpc.AgentAsyncStub) -> None:
    limits = pb.Resources(memory_bytes=64 * MIB, cpu_millis=500)
    s = spec("while :; do :; done", resources=limits)
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    seen: list[pb.ServerStats] = []
    async with asyncio.timeout(15):
        while not seen or seen[-1].cpu_absolute < 25:
            await asyncio.sleep(0.6)
            seen.append(await stub.GetStats(pb.GetStatsRequest(id=s.id), metadata=AUTH))
    last = seen[-1]
    assert last.cpu_absolute < 70  # the 0.5-CPU quota holds
    assert 0 < last.memory_bytes < last.memory_limit_bytes == 64 * MIB
    assert last.state == pb.SERVER_STATE_RUNNING
    assert last.uptime_ms > 0
    await stub.KillServer(pb.KillServerRequest(id=s.id), metadata=AUTH)


async def test_heartbeats_carry_host_and_server_stats(stub: pb_grpc.AgentAsyncStub) -> None:
    s = spec("sleep 30")
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    beats = []
    watch = stub.Watch(pb.WatchRequest(heartbeat_interval_ms=200), metadata=AUTH)
    async with asyncio.timeout(10):
        async for event in watch:
            if event.HasField("heartbeat"):
                beats.append(event)
            if len(beats) == 3:
                break
    watch.cancel()
    assert beats[0].seq < beats[1].seq < beats[2].seq
    beat = beats[-1].heartbeat
    assert beat.host.memory_total_bytes > 0
    assert [x.id for x in beat.servers] == [s.id]
    assert [x.id for x in beat.stats] == [s.id]
    assert beat.stats[0].memory_bytes > 0
    info = await stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=AUTH)
    assert info.fingerprint.cpu_count >= 1
    assert info.fingerprint.docker_version
    assert info.fingerprint.cgroup_version in (1, 2)
    assert (info.port_range_start, info.port_range_end) == (30000, 30999)


async def test_oom_kill_is_reported(stub: pb_grpc.AgentAsyncStub) -> None:
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    # `tail` keeps the whole newline-free input in memory: far over the 32 MiB limit.
    s = spec("head -c 200m /dev/zero | tail", resources=pb.Resources(memory_bytes=32 * MIB))
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    exited = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_EXITED, timeout=30)
    assert exited.oom_killed
    assert not exited.requested
    assert exited.status.oom_killed
    watch.cancel()
