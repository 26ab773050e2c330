"""HTTP health probes on a real container: a redirect is an answer, never followed.

Issue 9, finding 2: a health endpoint answering 302 to http://127.0.0.1:PORT/ made the
agent (root, host network) request the host's loopback every period.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent.daemon import RunningAgent
from agent.lifecycle.health import probe_url
from agent.lifecycle.machine import Health
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, spec, wait_for_event
from tests.outbound_support import CountingListener, counting_listener

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]

CGI = "#!/bin/sh\nprintf 'Status: {status}\\r\\nLocation: {location}\\r\\n\\r\\n'\n"


@pytest.fixture
async def listener() -> AsyncIterator[CountingListener]:
    async with counting_listener() as state:
        yield state


def redirecting_server(status: str, location: str) -> pb.ServerSpec:
    """busybox httpd whose health endpoint (a CGI script) answers `status` with a
    Location header; probed every second."""
    check = pb.HealthCheck(http_path="/cgi-bin/health", period_seconds=1, failure_threshold=1)
    server = spec(
        "exec httpd -f -p 8080 -h /data",
        ports=[pb.PortBinding(container_port=8080, host_ip="127.0.0.1")],
        health_check=check,
    )
    script = CGI.format(status=status, location=location).encode()
    server.files.add(path="cgi-bin/health", content=script, mode=0o755)
    return server


async def test_a_redirect_to_host_loopback_is_healthy_and_never_followed(
    agent: RunningAgent, stub: pb_grpc.AgentAsyncStub, listener: CountingListener
) -> None:
    server = redirecting_server("302 Found", listener.url("127.0.0.1"))
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    try:
        await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
        # RUNNING comes from the first passing probe: 3xx counts as healthy. Had the
        # probe followed the redirect, it would have done so before this event.
        await wait_for_event(watch.__aiter__(), server.id, pb.LIFECYCLE_KIND_RUNNING)
    finally:
        watch.cancel()
    assert agent.supervisor.get(server.id).machine.health is Health.HEALTHY
    assert listener.connections == 0


async def test_an_error_status_is_unhealthy(
    stub: pb_grpc.AgentAsyncStub, listener: CountingListener
) -> None:
    server = redirecting_server("500 Broken", listener.url("127.0.0.1"))
    watch = stub.Watch(pb.WatchRequest(), metadata=AUTH)
    try:
        await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
        changed = await wait_for_event(
            watch.__aiter__(), server.id, pb.LIFECYCLE_KIND_HEALTH_CHANGED
        )
    finally:
        watch.cancel()
    assert changed.health == pb.HEALTH_UNHEALTHY
    assert listener.connections == 0


@pytest.mark.parametrize(
    "path", ["/health", "//127.0.0.1:9/x", "@127.0.0.1/", "http://127.0.0.1/", "a?b=@c:1"]
)
def test_the_probe_url_always_targets_the_container(path: str) -> None:
    url = probe_url("172.18.0.5", 8080, path)
    assert (url.scheme, url.host, url.port) == ("http", "172.18.0.5", 8080)
