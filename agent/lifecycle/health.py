"""Health probes: one attempt of a server's HealthCheck (http path, tcp port, command).

HTTP probes follow Kubernetes' rule: a GET to the container's own address and first
container port, redirects NOT followed, and any status from 200 to 399 is healthy (a
redirect answer is a live server); anything else, or no answer, is not. The agent runs
as root on the host's network, so a probe that followed a tenant's `Location` could
reach the host's loopback services and leak, through the health result, whether they
answer: the probe's only destination is the address the URL is built from.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from agent.runtime import ContainerRuntime, ContainerRuntimeError
from protos import agent_pb2 as pb

HEALTHY_STATUSES = range(200, 400)


def probe_url(address: str, port: int, http_path: str) -> URL:
    """The probe's URL: always `address`:`port`, whatever `http_path` holds (it only
    ever becomes the path and query)."""
    path, _, query = http_path.partition("?")
    return URL.build(scheme="http", host=address, port=port, path="/" + path.lstrip("/"),
                     query_string=query)  # fmt: skip


async def _http_probe(url: URL) -> bool:
    async with (
        aiohttp.ClientSession(trust_env=False) as session,
        session.get(url, allow_redirects=False) as response,
    ):
        return response.status in HEALTHY_STATUSES


async def probe_once(
    check: pb.HealthCheck,
    runtime: ContainerRuntime,
    container_id: str,
    address: str,
    first_port: int,
) -> bool:
    """True when the probe passes within the check's timeout (default 5 s).

    Network probes use the container's own bridge address; a server without one
    (network disabled) can only use a command probe.
    """
    timeout = float(check.timeout_seconds or 5)
    kind = check.WhichOneof("probe")
    try:
        async with asyncio.timeout(timeout):
            if kind == "command":
                return await runtime.exec(container_id, ["sh", "-c", check.command]) == 0
            if not address:
                return False
            if kind == "tcp_port":
                _reader, writer = await asyncio.open_connection(address, check.tcp_port)
                writer.close()
                await writer.wait_closed()
                return True
            if kind == "http_path" and first_port:
                return await _http_probe(probe_url(address, first_port, check.http_path))
    except (TimeoutError, OSError, ValueError, aiohttp.ClientError, ContainerRuntimeError):
        return False
    return False
