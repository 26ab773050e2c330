"""The control plane's calls to an agent wait out a slow graceful stop: a stop, restart
or remove lasts as long as the server's stop timeout, which may exceed the deadline of
ordinary calls."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.agents.client import AgentError, GrpcAgentClient
from protos import agent_pb2 as pb
from tests.agent.conftest import spec
from tests.controlplane.accounts_support import register
from tests.controlplane.cluster_support import enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY

Client = TestClient[Any, Any]
pytestmark = [SQLITE_ONLY, pytest.mark.docker]
CALL_DEADLINE = 1.0
STOP_TIMEOUT = 3
STUBBORN = "trap '' TERM; while true; do sleep 0.2; done"  # ignores SIGTERM


async def test_stop_and_remove_outlast_the_ordinary_deadline(
    fast_api: Client, tmp_path: Path
) -> None:
    admin = await register(fast_api)
    async with enrolled_agent(fast_api, admin, tmp_path / "a", "node-a") as agent:
        calls = GrpcAgentClient(
            f"127.0.0.1:{agent.grpc.port}", agent.identity.node_secret, timeout=CALL_DEADLINE
        )
        try:
            await eventually(lambda: _reachable(calls))  # past the first connect's back-off
            server = spec(STUBBORN, stop=pb.StopPolicy(timeout_seconds=STOP_TIMEOUT))
            await calls.create_server(server, start=True)
            began = time.monotonic()
            stopped = await calls.stop_server(server.id)
            assert time.monotonic() - began >= STOP_TIMEOUT - 0.5
            assert stopped.status.state == pb.SERVER_STATE_OFFLINE
            await calls.start_server(server.id)
            assert await calls.remove_server(server.id, delete_data=True)
        finally:
            await calls.close()


async def _reachable(calls: GrpcAgentClient) -> bool:
    try:
        await calls.get_node_info()
    except AgentError:
        return False
    return True
