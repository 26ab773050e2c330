"""The file API addresses a server by its id; the agent maps it to the slot's volume
(`ServerSpec.volume_id`), the directory the server's container mounts."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import grpc
import pytest

from agent.daemon import RunningAgent
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, spec
from tests.agent.files.conftest import FileAgent

pytestmark = pytest.mark.docker


async def test_files_of_a_server_live_in_its_volume(agent: RunningAgent) -> None:
    server = spec("cat /data/from-the-api.txt > /data/seen-by-the-container.txt")
    server.volume_id = f"v{uuid.uuid4().hex}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel:
        stub = pb_grpc.AgentStub(channel)
        await stub.CreateServer(pb.CreateServerRequest(spec=server), metadata=AUTH)
        data_dir = Path(agent.config.data_dir)
        async with aiohttp.ClientSession() as http:
            files = FileAgent(
                f"http://127.0.0.1:{agent.http.port}",
                agent.identity.node_id,
                server.id,
                data_dir,
                http,
            )
            status, _ = await files.put("from-the-api.txt", b"hello volume")
            assert status in (200, 201)
        volume = data_dir / "volumes" / server.volume_id
        assert (volume / "from-the-api.txt").read_bytes() == b"hello volume"
        assert not (data_dir / "volumes" / server.id).exists()
        await stub.StartServer(pb.StartServerRequest(id=server.id), metadata=AUTH)
        for _ in range(200):
            found = await stub.GetServer(pb.GetServerRequest(id=server.id), metadata=AUTH)
            if found.status.exited:
                break
            await asyncio.sleep(0.05)
        assert (volume / "seen-by-the-container.txt").read_bytes() == b"hello volume"
