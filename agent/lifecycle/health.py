"""Health probes: one attempt of a server's HealthCheck (http path, tcp port, command)."""

from __future__ import annotations

import asyncio

import aiohttp

from agent.runtime import ContainerRuntime, ContainerRuntimeError
from protos import agent_pb2 as pb


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
                url = f"http://{address}:{first_port}/{check.http_path.lstrip('/')}"
                async with aiohttp.ClientSession() as session, session.get(url) as response:
                    return response.status < 400
    except (TimeoutError, OSError, aiohttp.ClientError, ContainerRuntimeError):
        return False
    return False
