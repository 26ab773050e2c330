"""Supervisor.recreate (the agent's half of a rolling update) against the real dockerd:
a spec that cannot be created leaves the old container running untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import docker
import pytest

from agent.daemon import RunningAgent
from agent.runtime import ImageNotFound
from protos import agent_pb2 as pb
from tests.agent.conftest import ECHO, spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]


def container_state(container_id: str) -> tuple[str, bool]:
    client = docker.from_env()
    try:
        attrs = client.api.inspect_container(container_id)
        return str(attrs["Id"]), bool(attrs["State"]["Running"])
    finally:
        client.close()


async def test_recreate_with_an_unknown_image_keeps_the_old_container(
    agent: RunningAgent,
) -> None:
    s = spec(ECHO)
    old = await agent.supervisor.create(s, start=True)
    old_id = old.container_id
    update = pb.ServerSpec()
    update.CopyFrom(s)
    update.image = "encedeus/no-such-image:never"
    with pytest.raises(ImageNotFound):
        await agent.supervisor.recreate(update, start=True)
    assert await asyncio.to_thread(container_state, old_id) == (old_id, True)
    assert agent.supervisor.get(s.id).container_id == old_id
    assert agent.supervisor.get(s.id).status().state == pb.SERVER_STATE_RUNNING


async def test_recreate_replaces_the_container_and_keeps_the_data(agent: RunningAgent) -> None:
    s = spec(ECHO, stop=pb.StopPolicy(command="stop"))
    s.files.add(path="world/level.dat", content=b"v1")
    old = await agent.supervisor.create(s, start=True)
    old_id = old.container_id
    update = spec("echo v2; " + ECHO, stop=pb.StopPolicy(command="stop"))
    update.id = s.id
    new = await agent.supervisor.recreate(update, start=True)
    assert new.container_id != old_id
    assert new.status().state == pb.SERVER_STATE_RUNNING
    assert list(new.spec.command) == list(update.command)
    assert await asyncio.to_thread((new.data_dir / "world" / "level.dat").read_bytes) == b"v1"
    with pytest.raises(docker.errors.NotFound):
        await asyncio.to_thread(container_state, old_id)


async def test_recreate_whose_data_dir_cannot_be_prepared_keeps_the_old_container(
    agent: RunningAgent, tmp_path: Path
) -> None:
    """The data directory is prepared before the old container is discarded: here the
    tenant made `link` a symlink out of its directory and the update writes an input
    file through it, which is refused."""
    s = spec(ECHO)
    old = await agent.supervisor.create(s, start=True)
    old_id = old.container_id
    outside = tmp_path / "outside"
    await asyncio.to_thread(outside.mkdir)
    await asyncio.to_thread((old.data_dir / "link").symlink_to, outside)
    update = pb.ServerSpec()
    update.CopyFrom(s)
    update.files.add(path="link/x", content=b"y")
    with pytest.raises(OSError, match="Invalid cross-device link"):
        await agent.supervisor.recreate(update, start=True)
    assert await asyncio.to_thread(container_state, old_id) == (old_id, True)
    assert agent.supervisor.get(s.id).container_id == old_id
    assert agent.supervisor.get(s.id).status().state == pb.SERVER_STATE_RUNNING
    assert await asyncio.to_thread(lambda: list(outside.iterdir())) == []
