"""A CreateServer whose caller goes away (a control plane killed mid-call) against the
real dockerd: the container Docker made is registered anyway, so the next control
plane's CreateServer of the same id finds it instead of failing forever."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.daemon import RunningAgent
from tests.agent.conftest import ECHO, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]


async def test_a_create_cancelled_while_docker_creates_still_registers_the_server(
    agent: RunningAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = agent.supervisor.runtime
    real_create = runtime.create
    docker_called = asyncio.Event()

    async def create(*args: Any, **kwargs: Any) -> Any:
        docker_called.set()
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(runtime, "create", create)
    s = spec(ECHO)
    caller = asyncio.create_task(agent.supervisor.create(s, start=False))
    await asyncio.wait_for(docker_called.wait(), 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(200):
        if s.id in agent.supervisor.servers:
            break
        await asyncio.sleep(0.05)
    server = agent.supervisor.get(s.id)
    assert server.container_id
