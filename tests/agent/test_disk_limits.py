"""Disk limits on the real dockerd: a process in the container stops at the limit with
ENOSPC and the host's disk holds no more; the files survive an agent restart (the
image is mounted again before anything starts); the limit grows in place and is not
lowered below use."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from agent.config import AgentConfig
from agent.fleet.volume_images import is_own_filesystem, limit_bytes
from protos import agent_pb2 as pb
from tests.agent.conftest import AUTH, agent_in_background, spec
from tests.agent.test_container_security import _stub, run_to_exit

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs"),
]
MIB = 1 << 20
# dd's messages go to the container's own filesystem first: the volume is full then.
FILL = (
    "dd if=/dev/zero of=/data/fill bs=1M count=64 2>/tmp/err; echo $? >/tmp/rc;"
    " wc -c </data/fill >/tmp/size; rm /data/fill; cp /tmp/err /tmp/rc /tmp/size /data/;"
    " dd if=/dev/zero of=/data/fill bs=1M count=12"
)


def _limited(command: str, disk: int) -> pb.ServerSpec:
    server = spec(command)
    server.volume_id = f"v{server.id}"
    server.resources.disk_bytes = disk
    server.stop.timeout_seconds = 1  # sh ignores SIGTERM: no need to wait long
    return server


async def test_a_write_in_the_container_stops_at_the_limit_and_files_survive_a_restart(
    agent_config: AgentConfig,
) -> None:
    server = _limited(FILL, 16 * MIB)
    volume = Path(agent_config.data_dir) / "volumes" / server.volume_id
    image = Path(agent_config.data_dir) / "images" / f"{server.volume_id}.ext4"
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        done = await run_to_exit(stub, server)
        assert done.status.exit_code == 0
        assert (volume / "rc").read_text().strip() != "0"
        assert "No space left on device" in (volume / "err").read_text()
        assert 8 * MIB < int((volume / "size").read_text()) <= 16 * MIB
        assert image.stat().st_blocks * 512 <= 17 * MIB  # the host's disk: no more
    # As after a reboot: nothing mounted; the next agent mounts it before any start.
    await asyncio.to_thread(subprocess.run, ["umount", str(volume)], check=True)
    assert not is_own_filesystem(volume)
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        assert is_own_filesystem(volume)
        assert (volume / "fill").stat().st_size > 8 * MIB
        # The slot's next replica (a new server id) runs on the same volume.
        successor = _limited("test -s /data/fill && echo seen > /data/seen", 16 * MIB)
        successor.volume_id = server.volume_id
        seen = await run_to_exit(stub, successor)
        assert seen.status.exit_code == 0
        assert (volume / "seen").read_text() == "seen\n"


async def test_the_limit_grows_in_place_and_is_not_lowered_below_use(
    agent_config: AgentConfig,
) -> None:
    server = _limited("dd if=/dev/zero of=/data/ten bs=1M count=10; sleep 30", 16 * MIB)
    volume = Path(agent_config.data_dir) / "volumes" / server.volume_id
    async with agent_in_background(agent_config) as agent, _stub(agent) as stub:
        await stub.CreateServer(pb.CreateServerRequest(spec=server, start=True), metadata=AUTH)
        async with asyncio.timeout(20):
            while not (volume / "ten").exists() or (volume / "ten").stat().st_size < 10 * MIB:
                await asyncio.sleep(0.05)
        lower = pb.ServerSpec()
        lower.CopyFrom(server)
        lower.resources.disk_bytes = 4 * MIB
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.RecreateServer(pb.CreateServerRequest(spec=lower), metadata=AUTH)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "cannot go below" in (refused.value.details() or "")
        running = await stub.GetServer(pb.GetServerRequest(id=server.id), metadata=AUTH)
        assert running.status.state == pb.SERVER_STATE_RUNNING  # untouched

        before = limit_bytes(volume)
        bigger = pb.ServerSpec()
        bigger.CopyFrom(server)
        bigger.resources.disk_bytes = 48 * MIB
        bigger.command[:] = ["sh", "-c", "sleep 30"]
        await stub.RecreateServer(pb.CreateServerRequest(spec=bigger, start=True), metadata=AUTH)
        assert limit_bytes(volume) > before + 28 * MIB
        assert (volume / "ten").stat().st_size == 10 * MIB
