"""DeleteVolume on a real agent and dockerd: a volume a server uses is refused, one no
server uses is unmounted and deleted (its image too), a second call is a no-op, and
an id that is no volume name never reaches the filesystem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import grpc
import pytest

from agent.config import AgentConfig
from agent.fleet.volume_images import is_own_filesystem
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, agent_in_background, spec
from tests.agent.test_container_security import _stub

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs"),
]


async def _refused(stub: pb_grpc.AgentAsyncStub, volume_id: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.DeleteVolume(pb.DeleteVolumeRequest(volume_id=volume_id), metadata=AUTH)
    return refused.value


async def test_a_volume_is_deleted_only_once_no_server_uses_it(agent_config: AgentConfig) -> None:
    server = spec("sleep 60")
    server.volume_id = f"v{server.id}"
    server.resources.disk_bytes = 16 << 20
    server.stop.timeout_seconds = 1
    root = Path(agent_config.data_dir)
    volume = root / "volumes" / server.volume_id
    image = root / "images" / f"{server.volume_id}.ext4"
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
        (volume / "world.dat").write_bytes(b"x" * 4096)
        in_use = await _refused(stub, server.volume_id)
        assert in_use.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "used by a server" in (in_use.details() or "")
        assert (volume / "world.dat").exists()

        await stub.RemoveServer(pb.RemoveServerRequest(id=server.id), metadata=AUTH)
        assert is_own_filesystem(volume)  # the data stays after the server
        request = pb.DeleteVolumeRequest(volume_id=server.volume_id)
        assert (await stub.DeleteVolume(request, metadata=AUTH)).deleted
        assert not volume.exists()
        assert not image.exists()
        assert not (root / "ownership" / server.volume_id).exists()
        assert not (await stub.DeleteVolume(request, metadata=AUTH)).deleted  # idempotent
        info = await stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=AUTH)
        assert server.volume_id not in {v.id for v in info.volumes}


@pytest.mark.parametrize("volume_id", ["..", "../images", "a/b", "", ".hidden", "x" * 64])
async def test_an_id_that_is_no_volume_name_is_refused(
    agent_config: AgentConfig, volume_id: str
) -> None:
    root = Path(agent_config.data_dir)
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        (root / "images").mkdir(exist_ok=True)
        refused = await _refused(stub, volume_id)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (root / "volumes").is_dir()
        assert (root / "images").is_dir()
