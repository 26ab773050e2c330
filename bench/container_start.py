"""Create+start latency: through the agent's gRPC vs. straight on the Docker API.

Both sides create and start the same container (the test image running `sleep`,
memory/pids limits, no network, a bind-mounted data directory), interleaved round by
round with the order alternating, so that engine load hits both alike; both
containers are removed after each round, outside the timing, so the engine holds the
same few containers throughout. The agent runs in this process on 127.0.0.1:0; its
figure includes the gRPC call, validation, the image digest, the data directory's
checks, attaching the console and the inspect that reads the started container.

Two figures, each against the raw Docker create+start of the same round:
- `existing_volume` (the goal): a new server in a slot whose volume already exists
  (a volume is made once per slot; each round is a new server of that slot).
- `new_slot_disk_limit`: the first start of a new slot with a disk limit, which makes
  the slot's ext4 image and loop-mounts it (reported, no goal).

`value` = median agent ms, `reference` = median Docker ms, `ratio` = the median of the
per-round ratios agent/Docker (goal: existing_volume <= 1.05): the engine's own start
time swings several-fold within seconds on a loaded machine, and a round's two starts
see the same load, so the paired ratio holds still where the ratio of the two medians
(also given, `ratio_of_medians`) does not. Per-round ratios are given as
min/median/max, the median of the per-round differences as the agent's own overhead,
with the load average at the start and end.

    .venv/bin/python bench/container_start.py [--rounds 40] [--new-slot-rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import docker
import grpc.aio

from agent.config import AgentConfig, NodeIdentity
from agent.daemon import running_agent
from agent.event_loop import run
from agent.fleet.data_dir import release_mounts_beneath
from agent.runtime.docker_runtime import host_config_args
from agent.runtime.types import ContainerSpec
from common.logging import configure_logging
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc

IMAGE = "encedeus/busybox:latest"
MEMORY = 64 * 1024 * 1024
DISK_LIMIT = 64 * 1024 * 1024
SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 (a throwaway agent)
AUTH = (("authorization", f"Bearer {SECRET}"),)
SETTLE_SECONDS = 0.5
BENCH_LABEL = {"encedeus.bench": uuid.uuid4().hex[:10]}


def docker_create_start(client: docker.DockerClient, data_dir: Path) -> tuple[float, str]:
    """One create+start of the same container straight on the API: (seconds, id)."""
    name = f"bench-docker-{uuid.uuid4().hex[:10]}"
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
    return time.perf_counter() - began, str(created["Id"])


async def agent_create_start(
    stub: pb_grpc.AgentAsyncStub, volume: str, disk_bytes: int = 0
) -> tuple[float, str]:
    """One CreateServer(start) of a new server in slot `volume`: (seconds, server id)."""
    spec = pb.ServerSpec(
        id=f"bench-{uuid.uuid4().hex[:10]}",
        volume_id=volume,
        image=IMAGE,
        command=["sleep", "3600"],
        resources=pb.Resources(memory_bytes=MEMORY, disk_bytes=disk_bytes),
        network_disabled=True,
    )
    began = time.perf_counter()
    await stub.CreateServer(pb.CreateServerRequest(spec=spec, start=True), metadata=AUTH)
    return time.perf_counter() - began, spec.id


async def remove_agent_server(stub: pb_grpc.AgentAsyncStub, server_id: str) -> None:
    await stub.KillServer(pb.KillServerRequest(id=server_id), metadata=AUTH)
    await stub.RemoveServer(pb.RemoveServerRequest(id=server_id), metadata=AUTH)


def remove_all(client: docker.DockerClient) -> None:
    filters: dict[str, str | list[str] | bool] = {
        "label": [f"{k}={v}" for k, v in BENCH_LABEL.items()]
    }
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        container.remove(force=True)


class Rounds:
    """Interleaved rounds of one kind; seconds of each side, round by round."""

    def __init__(self, client: docker.DockerClient, scratch: Path) -> None:
        self.client, self.scratch = client, scratch
        self.agent: list[float] = []
        self.docker: list[float] = []

    async def one(
        self, stub: pb_grpc.AgentAsyncStub, number: int, volume: str, disk_bytes: int = 0
    ) -> None:
        data_dir = self.scratch / f"docker-{uuid.uuid4().hex[:10]}"
        data_dir.mkdir(parents=True)
        # Alternate who goes first: the engine is still busy with the first
        # container's start when the second one is created.
        docker_first = number % 2 == 1
        if docker_first:
            docker_took, container_id = await asyncio.to_thread(
                docker_create_start, self.client, data_dir
            )
        agent_took, server_id = await agent_create_start(stub, volume, disk_bytes)
        if not docker_first:
            docker_took, container_id = await asyncio.to_thread(
                docker_create_start, self.client, data_dir
            )
        self.agent.append(agent_took)
        self.docker.append(docker_took)
        await remove_agent_server(stub, server_id)
        await asyncio.to_thread(self.client.api.remove_container, container_id, force=True)
        await asyncio.sleep(SETTLE_SECONDS)  # the engine finishes the removals meanwhile

    def summary(self) -> dict[str, object]:
        ratios = [a / d for a, d in zip(self.agent, self.docker, strict=True)]
        # Paired per round: the agent's own cost, with most of the engine's noise cancelled.
        overhead = [(a - d) * 1000 for a, d in zip(self.agent, self.docker, strict=True)]
        value = statistics.median(self.agent) * 1000
        reference = statistics.median(self.docker) * 1000
        return {
            "value": round(value, 1),
            "reference": round(reference, 1),
            "ratio": round(statistics.median(ratios), 3),
            "ratio_of_medians": round(value / reference, 3),
            "overhead_ms_median": round(statistics.median(overhead), 1),
            "round_ratio_min_median_max": [
                round(min(ratios), 3),
                round(statistics.median(ratios), 3),
                round(max(ratios), 3),
            ],
        }


async def measure(tmp: str, rounds: int, new_slot_rounds: int) -> dict[str, object]:
    client = docker.from_env()
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
    existing, fresh = Rounds(client, Path(tmp)), Rounds(client, Path(tmp))
    try:
        async with (
            running_agent(config, identity) as agent,
            grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel,
        ):
            stub = pb_grpc.AgentStub(channel)
            await existing.one(stub, 0, "slot-warm")  # warm-up (first-call costs); makes the slot
            existing.agent.clear()
            existing.docker.clear()
            for number in range(rounds):
                await existing.one(stub, number, "slot-warm")
                if number % 10 == 9:
                    print(f"round {number + 1}/{rounds} load {os.getloadavg()[0]:.1f}", flush=True)
            for number in range(new_slot_rounds):
                await fresh.one(stub, number, f"slot-new-{number}", DISK_LIMIT)
    finally:
        await asyncio.to_thread(remove_all, client)
        client.close()
    return {"existing_volume": existing.summary(), "new_slot_disk_limit": fresh.summary()}


async def main(rounds: int, new_slot_rounds: int) -> None:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="container-start-bench-") as tmp:
        try:
            figures = await measure(tmp, rounds, new_slot_rounds)
        finally:
            await asyncio.to_thread(release_mounts_beneath, Path(tmp))
    goal = figures["existing_volume"]
    assert isinstance(goal, dict)
    result = {
        "bench": "container_start",
        "value": goal["value"],
        "reference": goal["reference"],
        "ratio": goal["ratio"],
        "figures": figures,
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "unit": "ms (median create+start; reference: Docker API directly)",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--new-slot-rounds", type=int, default=5)
    options = parser.parse_args()
    configure_logging("warning")  # the agent's lifecycle logs would drown the result
    run(main(options.rounds, options.new_slot_rounds))
