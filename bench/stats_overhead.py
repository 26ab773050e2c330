"""CPU cost of container stats: the agent at 1 Hz vs. Docker's own stats streams.

100 containers run (the test image running `sleep`, on the default bridge). Phase 1:
a `skyhook` process serves one Watch stream at 1000 ms heartbeats (host stats plus
every container's memory, CPU, network, disk, uptime) for WINDOW seconds; `value` is
that process's CPU time over the window in % of one core (summed from its threads'
schedstat, in ns, not psutil's 10 ms ticks). Phase 2: the same
containers' stats streams from the Docker API (one per container, 1 Hz each, what a
client of Docker's stats API has to do) for the same window; `reference` is dockerd's
CPU plus this client's, in % of one core. `ratio` = value / reference.
Goals (issue 11): value <= 0.5 for 100 containers, ratio <= 0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import docker
import grpc.aio
import psutil

from agent.fleet.mounts import release_mounts_beneath
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

IMAGE = "encedeus/busybox:latest"
CONTAINERS = 100
WINDOW = 20.0
SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 (a throwaway agent)
AUTH = (("authorization", f"Bearer {SECRET}"),)
SESSION = uuid.uuid4().hex[:10]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def scheduled_seconds(pid: int) -> float:
    """CPU time of `pid`'s live threads from schedstat, in ns resolution: the tick-based
    figure moves in 10 ms steps, 0.05 % of one core over the window. A thread that ends
    inside the window takes its time with it; the agent's threads (loop, worker pool,
    grpc) live as long as it does."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended
    return total / 1e9


async def start_skyhook(tmp: Path) -> tuple[asyncio.subprocess.Process, int]:
    config = tmp / "config.hcl"
    config.write_text(
        "agent {\n"
        f'  data_dir = "{tmp / "data"}"\n'
        f'  node_id = "bench-{SESSION}"\n  node_secret = "{SECRET}"\n'
        '  grpc {\n    host = "127.0.0.1"\n    port = 0\n  }\n'
        '  http {\n    host = "127.0.0.1"\n    port = 0\n  }\n'
        '  sftp {\n    host = "127.0.0.1"\n    port = 0\n  }\n'
        f'  labels = {{ "encedeus.bench" = "{SESSION}" }}\n'
        '  log_level = "warning"\n'
        "}\n"
    )
    path = str(tmp / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.setblocking(False)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "--config",
            str(config),
            env={**os.environ, "NOTIFY_SOCKET": path},
        )
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            while True:
                message = (await loop.sock_recv(listener, 4096)).decode()
                if message.startswith("READY=1"):
                    status = message.split("STATUS=", 1)[1].split()
                    return process, int(dict(s.split("=", 1) for s in status)["grpc"])


async def create_servers(stub: pb_grpc.AgentAsyncStub) -> list[str]:
    gate = asyncio.Semaphore(4)

    async def one(index: int) -> str:
        spec = pb.ServerSpec(id=f"stats-{SESSION}-{index}", image=IMAGE, command=["sleep", "3600"])
        async with gate:
            server = await stub.CreateServer(
                pb.CreateServerRequest(spec=spec, start=True), metadata=AUTH
            )
        return server.status.container_id

    return list(await asyncio.gather(*(one(i) for i in range(CONTAINERS))))


async def agent_phase(stub: pb_grpc.AgentAsyncStub, agent: int) -> float:
    # As the control plane asks for it (heartbeats leave out unchanged statuses).
    request = pb.WatchRequest(heartbeat_interval_ms=1000, omit_unchanged_servers=True)
    watch = stub.Watch(request, metadata=AUTH)
    beats = 0
    began_cpu = began = 0.0
    async for event in watch:
        if not event.HasField("heartbeat"):
            continue
        beats += 1
        if beats == 3:  # settled: every container has a CPU baseline
            began_cpu, began = scheduled_seconds(agent), time.monotonic()
            assert len(event.heartbeat.stats) == CONTAINERS
        if began and time.monotonic() - began >= WINDOW:
            break
    watch.cancel()
    return 100 * (scheduled_seconds(agent) - began_cpu) / (time.monotonic() - began)


def docker_phase(container_ids: list[str]) -> float:
    dockerd = next(p for p in psutil.process_iter(["name"]) if p.info["name"] == "dockerd")
    me = psutil.Process()
    clients = [docker.from_env() for _ in container_ids]
    stop = threading.Event()

    def consume(client: docker.DockerClient, container_id: str) -> None:
        for _ in client.api.stats(container_id, stream=True, decode=True):
            if stop.is_set():
                return

    threads = [
        threading.Thread(target=consume, args=(c, cid), daemon=True)
        for c, cid in zip(clients, container_ids, strict=True)
    ]
    for thread in threads:
        thread.start()
    time.sleep(5)  # let every stream settle into its 1 Hz rhythm
    began = time.monotonic()
    began_cpu = cpu_seconds(dockerd) + cpu_seconds(me)
    time.sleep(WINDOW)
    used = cpu_seconds(dockerd) + cpu_seconds(me) - began_cpu
    elapsed = time.monotonic() - began
    stop.set()
    for client in clients:
        client.close()
    return 100 * used / elapsed


def remove_all() -> None:
    client = docker.from_env()
    filters: dict[str, str | list[str] | bool] = {"label": [f"encedeus.bench={SESSION}"]}
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        container.remove(force=True)
    client.close()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        process, port = await start_skyhook(Path(tmp))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.AgentStub(channel)
                container_ids = await create_servers(stub)
                value = await agent_phase(stub, process.pid)
            reference = await asyncio.to_thread(docker_phase, container_ids)
        finally:
            process.terminate()
            await process.wait()
            await asyncio.to_thread(remove_all)
            # The agent mounts each data directory on itself (nosuid,nodev).
            await asyncio.to_thread(release_mounts_beneath, Path(tmp) / "data")
    print(f"agent: {value:.2f}% of one core; docker stats: {reference:.2f}%")
    result = {
        "bench": "stats_overhead",
        "value": round(value, 3),
        "reference": round(reference, 3),
        "ratio": round(value / reference, 4),
        "unit": f"% of one core, {CONTAINERS} containers at 1 Hz (reference: dockerd+client)",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
