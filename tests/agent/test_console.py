"""Console over gRPC: a container that echoes its input, logs with tail and follow,
and the done pattern that moves a server from starting to running."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from agent.daemon import RunningAgent
from agent.lifecycle.machine import State
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, spec, wait_for_event

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]


async def read_until(stream: object, text: str, timeout: float = 10.0) -> list[str]:
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        async for line in stream:  # type: ignore[attr-defined]
            seen.append(line.text)
            if line.text == text:
                return seen
    raise AssertionError(f"{text!r} never came; saw {seen}")


async def test_console_round_trip_with_follow(stub: pb_grpc.AgentAsyncStub) -> None:
    s = spec("echo ready; " + ECHO)
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    follow = stub.GetLogs(pb.GetLogsRequest(id=s.id, follow=True), metadata=AUTH)
    await stub.SendCommand(pb.SendCommandRequest(id=s.id, line="hello world"), metadata=AUTH)
    lines = await read_until(follow, "got hello world")
    assert lines[0] == "ready"
    await stub.SendCommand(pb.SendCommandRequest(id=s.id, line="stop"), metadata=AUTH)
    # The follow ends when the server's output ends.
    async with asyncio.timeout(10):
        rest = [line.text async for line in follow]
    assert rest == []


async def test_logs_tail(stub: pb_grpc.AgentAsyncStub) -> None:
    # stdout and stderr are separate pipes: only a pause orders lines across them.
    s = spec("for i in 1 2 3 4 5; do echo line$i; done; sleep 0.3; echo oops >&2; " + ECHO)
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    follow = stub.GetLogs(pb.GetLogsRequest(id=s.id, follow=True), metadata=AUTH)
    await read_until(follow, "oops")
    follow.cancel()
    tail = [
        (line.stream, line.text)
        async for line in stub.GetLogs(pb.GetLogsRequest(id=s.id, tail=2), metadata=AUTH)
    ]
    assert tail == [("stdout", "line5"), ("stderr", "oops")]


async def test_done_pattern_marks_running(stub: pb_grpc.AgentAsyncStub) -> None:
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    s = spec("sleep 0.5; echo 'Done (1.2s)! For help'; " + ECHO, done_pattern=r"Done \(.*\)!")
    created = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    assert created.status.state == pb.SERVER_STATE_STARTING
    running = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_RUNNING)
    assert running.status.state == pb.SERVER_STATE_RUNNING
    watch.cancel()


async def test_a_done_line_printed_at_once_marks_running(stub: pb_grpc.AgentAsyncStub) -> None:
    # Printed before the agent has seen the start: matched when it has.
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    s = spec("echo 'Done (0.0s)!'; " + ECHO, done_pattern=r"Done \(.*\)!")
    await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_RUNNING, timeout=5)
    watch.cancel()


async def test_command_health_check_marks_running(stub: pb_grpc.AgentAsyncStub) -> None:
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    check = pb.HealthCheck(command="test -f /data/ready", period_seconds=1)
    s = spec("sleep 1; touch /data/ready; " + ECHO, health_check=check)
    created = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    assert created.status.health == pb.HEALTH_STARTING
    changed = await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_HEALTH_CHANGED)
    assert changed.health == pb.HEALTH_HEALTHY
    await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_RUNNING)
    watch.cancel()


async def test_published_port_and_http_health_check(stub: pb_grpc.AgentAsyncStub) -> None:
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    events = watch.__aiter__()
    check = pb.HealthCheck(http_path="/index.html", period_seconds=1)
    port = pb.PortBinding(container_port=8080, host_ip="127.0.0.1")  # host port: any free
    s = spec("httpd -f -p 8080 -h /data", ports=[port], health_check=check)
    s.files.add(path="index.html", content=b"hello from the data dir\n")
    created = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
    host_port = created.spec.ports[0].host_port
    assert 30000 <= host_port <= 30999
    await wait_for_event(events, s.id, pb.LIFECYCLE_KIND_RUNNING)
    watch.cancel()
    url = f"http://127.0.0.1:{host_port}/index.html"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert await response.text() == "hello from the data dir\n"
    stats = await stub.GetStats(pb.GetStatsRequest(id=s.id), metadata=AUTH)
    assert stats.network.tx_bytes > 0  # the page it just served
    assert stats.disk_bytes == len(b"hello from the data dir\n")


async def test_follow_after_the_output_ended_does_not_wait_for_the_exit_event(
    agent: RunningAgent,
) -> None:
    # The attachment closes (output ended) before Docker's exit event changes the state;
    # a follow that starts in between must end after the kept lines, not wait forever.
    s = spec("echo last words")
    server = await agent.supervisor.create(s, start=True)
    async with asyncio.timeout(10):
        while server.attachment is None or not server.attachment.closed:
            await asyncio.sleep(0.02)
    server.machine.state = State.RUNNING  # as if the exit event had not arrived yet
    async with asyncio.timeout(5):
        lines = [line.text async for line in agent.supervisor.logs(s.id, 0, follow=True)]
    assert lines == ["last words"]
