"""Create+start latency: through the agent's gRPC vs. straight on the Docker API.

Both sides create and start the same container (the test image running `sleep`,
memory/pids limits, no network) ROUNDS times, interleaved so that engine load hits
both alike. The agent runs in this process on 127.0.0.1:0; its figure includes the
gRPC call, validation, the data directory, attaching the console and the inspects.
`value` = median agent ms, `reference` = median Docker ms, `ratio` = value/reference.
Goal: ratio <= 1.10.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import docker
import grpc.aio

from agent.config import AgentConfig, NodeIdentity
from agent.daemon import running_agent
from agent.runtime.docker_runtime import host_config_args
from agent.runtime.types import ContainerSpec
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

IMAGE = "encedeus/busybox:latest"
ROUNDS = 30
MEMORY = 64 * 1024 * 1024
SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 (a throwaway agent)
AUTH = (("authorization", f"Bearer {SECRET}"),)
BENCH_LABEL = {"encedeus.bench": uuid.uuid4().hex[:10]}


def docker_create_start(client: docker.DockerClient, data_dir: Path) -> float:
    """One create+start of the same container straight on the API; seconds."""
    name = f"bench-docker-{uuid.uuid4().hex[:10]}"
    data_dir.mkdir(parents=True)
    spec = ContainerSpec(
        name=name,
        image=IMAGE,
        memory_bytes=MEMORY,
        binds={str(data_dir): "/data"},
        network_disabled=True,
    )
    began = time.perf_counter()
    created = client.api.create_container(
        IMAGE,
        command=["sleep", "3600"],
        name=name,
        labels=BENCH_LABEL,
        host_config=client.api.create_host_config(**host_config_args(spec)),
        stdin_open=True,
        detach=True,
        working_dir="/data",
    )
    client.api.start(created["Id"])
    return time.perf_counter() - began


async def agent_create_start(stub: pb_grpc.AgentAsyncStub) -> float:
    spec = pb.ServerSpec(
        id=f"bench-{uuid.uuid4().hex[:10]}",
        image=IMAGE,
        command=["sleep", "3600"],
        resources=pb.Resources(memory_bytes=MEMORY),
        network_disabled=True,
    )
    began = time.perf_counter()
    await stub.CreateServer(pb.CreateServerRequest(spec=spec, start=True), metadata=AUTH)
    return time.perf_counter() - began


def remove_all(client: docker.DockerClient) -> None:
    filters: dict[str, str | list[str] | bool] = {
        "label": [f"{k}={v}" for k, v in BENCH_LABEL.items()]
    }
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        container.remove(force=True)


async def main() -> None:
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        config = AgentConfig.model_validate(
            {
                "data_dir": f"{tmp}/agent",
                "node_id": f"bench-{uuid.uuid4().hex[:8]}",
                "node_secret": SECRET,
                "grpc": {"host": "127.0.0.1", "port": 0},
                "http": {"host": "127.0.0.1", "port": 0},
                "sftp": {"host": "127.0.0.1", "port": 0},
                "labels": BENCH_LABEL,
            }
        )
        identity = NodeIdentity(config.node_id, SECRET)
        agent_times: list[float] = []
        docker_times: list[float] = []
        try:
            async with (
                running_agent(config, identity) as agent,
                grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel,
            ):
                stub = pb_grpc.AgentStub(channel)
                await agent_create_start(stub)  # warm-up: first-call costs on both sides
                await asyncio.to_thread(docker_create_start, client, Path(tmp, "warm"))
                for round_number in range(ROUNDS):
                    data_dir = Path(tmp, f"docker-{round_number}")
                    # Alternate who goes first: the engine is still busy with the first
                    # container's start when the second one is created.
                    if round_number % 2:
                        agent_times.append(await agent_create_start(stub))
                    docker_times.append(
                        await asyncio.to_thread(docker_create_start, client, data_dir)
                    )
                    if not round_number % 2:
                        agent_times.append(await agent_create_start(stub))
                    await asyncio.sleep(0.2)  # let both settle before the next round
        finally:
            await asyncio.to_thread(remove_all, client)
            client.close()
    value = statistics.median(agent_times) * 1000
    reference = statistics.median(docker_times) * 1000
    print(f"agent  ms: {', '.join(f'{t * 1000:.0f}' for t in agent_times)}")
    print(f"docker ms: {', '.join(f'{t * 1000:.0f}' for t in docker_times)}")
    result = {
        "bench": "container_start",
        "value": round(value, 1),
        "reference": round(reference, 1),
        "ratio": round(value / reference, 3),
        "unit": "ms (median create+start; reference: Docker API directly)",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
