"""Helpers for tests that run a control plane with real agents on the local dockerd:
enrol an in-process agent through the API, label its containers with this test
session, and remove them afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from agent.config import AgentConfig, load_identity
from agent.daemon import RunningAgent, running_agent
from agent.enrolment import enrol
from tests.controlplane.accounts_support import Account
from tests.docker_support import remove_labelled_containers
from tests.listeners import agent_listeners

SESSION = uuid.uuid4().hex[:12]
SESSION_LABEL = "encedeus.test-session"
FAST = {
    "node_grace_seconds": 3.0,
    "heartbeat_interval_ms": 200,
    "reconcile_interval_seconds": 0.5,
    "restart_backoff_base_seconds": 0.5,
    "restart_backoff_cap_seconds": 2.0,
}


async def create_node(client: TestClient[Any, Any], admin: Account, name: str) -> str:
    """A new node's join token."""
    response = await client.post("/v1/nodes", json={"name": name}, headers=admin.headers)
    body = await response.json()
    assert response.status == 201, body
    token: str = body["join_token"]
    return token


def agent_config(data_dir: Path, url: str, token: str, **overrides: Any) -> AgentConfig:
    """An agent that enrols at `url` with fixed loopback ports and session labels."""
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        "controlplane_url": url,
        "join_token": token,
        **agent_listeners(),
        "labels": {SESSION_LABEL: SESSION},
        "port_range": {"start": 31000, "end": 31999},
        "watchdog": False,
        **overrides,
    }
    return AgentConfig.model_validate(values)


@contextlib.asynccontextmanager
async def enrolled_agent(
    client: TestClient[Any, Any], admin: Account, data_dir: Path, name: str
) -> AsyncIterator[RunningAgent]:
    """Create a node, enrol an in-process agent for it and run it until exit."""
    token = await create_node(client, admin, name)
    config = agent_config(data_dir, str(client.make_url("")), token)
    identity = await enrol(config)
    assert await asyncio.to_thread(load_identity, config) == identity
    try:
        async with running_agent(config, identity) as running:
            yield running
    finally:
        await asyncio.to_thread(remove_labelled_containers, {"encedeus.node": identity.node_id})


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 20.0, interval: float = 0.1
) -> Any:
    """Poll `check` until it returns a truthy value; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def count_submits(agent: RunningAgent) -> Callable[[], int]:
    """Count the agent's CreateServer/RecreateServer operations from now on; the
    counter's current value."""
    submit = agent.supervisor.submit
    count = 0

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return await submit(*args, **kwargs)

    agent.supervisor.submit = counted  # type: ignore[method-assign]
    return lambda: count
