"""A SIGKILLed agent, started again, finds its containers, restarts none of them, and
resumes console capture and stats. The agent runs as a real `skyhook` process that
reports readiness over the systemd notify protocol."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import docker
import grpc.aio
import pytest

from common.subprocesses import spawn
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, SECRET, SESSION, SESSION_LABEL, spec
from tests.docker_support import remove_labelled_containers

pytestmark = pytest.mark.docker


class SkyhookProcess:
    def __init__(self, config: Path, notify_dir: Path) -> None:
        self.config, self.notify_dir = config, notify_dir
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> int:
        """Start skyhook and wait for READY=1; the gRPC port it reported."""
        path = str(self.notify_dir / f"notify-{uuid.uuid4().hex[:6]}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(path)
            listener.setblocking(False)
            env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
            self.process = await spawn(
                sys.executable,
                "-m",
                "agent.cli",
                "--config",
                str(self.config),
                env=env,
                stderr=asyncio.subprocess.DEVNULL,
            )
            loop = asyncio.get_running_loop()
            status: dict[str, str] = {}
            async with asyncio.timeout(30):
                # READY=1 (with the bound ports), then the watchdog's first WATCHDOG=1.
                while True:
                    message = (await loop.sock_recv(listener, 4096)).decode()
                    if message.startswith("READY=1"):
                        fields = message.split("STATUS=", 1)[1].split()
                        status = dict(item.split("=", 1) for item in fields)
                    elif message == "WATCHDOG=1" and status:
                        return int(status["grpc"])

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await self.process.wait()
        return self.process.returncode or 0


@pytest.fixture
async def skyhook(tmp_path: Path) -> AsyncIterator[SkyhookProcess]:
    node = f"node-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "config.hcl"
    config.write_text(
        "agent {\n"
        f'  data_dir = "{tmp_path / "data"}"\n'
        f'  node_id = "{node}"\n  node_secret = "{SECRET}"\n'
        '  grpc {\n    host = "127.0.0.1"\n    port = 0\n  }\n'
        '  http {\n    host = "127.0.0.1"\n    port = 0\n  }\n'
        '  sftp {\n    host = "127.0.0.1"\n    port = 0\n  }\n'
        f'  labels = {{ "{SESSION_LABEL}" = "{SESSION}" }}\n'
        "}\n"
    )
    process = SkyhookProcess(config, tmp_path)
    try:
        yield process
    finally:
        await process.terminate()
        await asyncio.to_thread(remove_labelled_containers, {"encedeus.node": node})


def restart_count(container_id: str) -> tuple[int, str]:
    client = docker.from_env()
    try:
        attrs = client.api.inspect_container(container_id)
        return int(attrs["RestartCount"]), str(attrs["State"]["StartedAt"])
    finally:
        client.close()


async def test_sigkill_then_restart_reattaches(skyhook: SkyhookProcess) -> None:
    port = await skyhook.start()
    s = spec("echo booted; " + ECHO, stop=pb.StopPolicy(command="stop"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AgentStub(channel)
        before = await stub.CreateServer(pb.CreateServerRequest(spec=s, start=True), metadata=AUTH)
        await stub.SendCommand(pb.SendCommandRequest(id=s.id, line="one"), metadata=AUTH)
        await asyncio.sleep(0.3)
    docker_before = await asyncio.to_thread(restart_count, before.status.container_id)

    await skyhook.kill()
    port = await skyhook.start()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AgentStub(channel)
        after = await stub.GetServer(pb.GetServerRequest(id=s.id), metadata=AUTH)
        assert after.status.container_id == before.status.container_id
        assert after.status.started_at_ms == before.status.started_at_ms
        assert after.status.state == pb.SERVER_STATE_RUNNING
        assert after.spec.stop == before.spec.stop
        assert await asyncio.to_thread(restart_count, after.status.container_id) == docker_before
        # Console: history from before the kill, and new input still reaches it.
        follow = stub.GetLogs(pb.GetLogsRequest(id=s.id, follow=True), metadata=AUTH)
        await stub.SendCommand(pb.SendCommandRequest(id=s.id, line="two"), metadata=AUTH)
        seen = []
        async with asyncio.timeout(10):
            async for line in follow:
                seen.append(line.text)
                if line.text == "got two":
                    break
        follow.cancel()
        assert seen[:2] == ["booted", "got one"]
        # Stats resumed.
        stats = await stub.GetStats(pb.GetStatsRequest(id=s.id), metadata=AUTH)
        assert stats.memory_bytes > 0
        # Lifecycle tracking resumed: a stop by command is seen and requested.
        stopped = await stub.StopServer(pb.StopServerRequest(id=s.id), metadata=AUTH)
        assert (stopped.status.state, stopped.status.exit_code) == (pb.SERVER_STATE_OFFLINE, 0)
    assert await skyhook.terminate() == 0
