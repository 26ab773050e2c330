"""The one two-agent cluster every two-agent test shares (a control plane and agents
`node-a` and `node-b` as processes on loopback, the real dockerd), with the short
liveness timings of tests/e2e/cluster_support.py. Made once per session: a test that
kills, freezes or drains a node brings it back before it ends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster_support import (
    Cluster,
    add_agent,
    remove_session_containers,
    sign_in_admin,
    start_controlplane,
    wait_healthy,
)


@pytest.fixture(scope="session")
def two_agent_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("cluster")
    running = start_controlplane(root)

    async def assemble() -> None:
        await wait_healthy(running)
        await sign_in_admin(running)
        await add_agent(running, "node-a", (31200, 31399))
        await add_agent(running, "node-b", (31400, 31599))

    try:
        asyncio.run(assemble())
        yield running
    finally:
        for agent in running.agents.values():
            agent.stop()
        running.controlplane.stop()
        remove_session_containers()
