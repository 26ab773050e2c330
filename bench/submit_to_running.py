"""Submit-to-running latency: `POST /v1/deployments` until every replica runs.

One control plane (embedded SQLite, default settings) and one local agent enrolled
through the API, both in this process, on the local dockerd with the test image
present. Each round creates a one-replica deployment and times until the control plane
tells a client that it runs: the `deployment_status_changed` event with status
`running` on the notifications WebSocket (no polling: a poll loop in this process
would steal the event loop the control plane and agent run on); `GET …/status` then
confirms one replica available, untimed.

The reference is `docker run -d` doing the container work the agent does
(agent/fleet/spec.py, agent/runtime/docker_runtime.py::host_config_args): the agent's
network, the same memory (no swap), CPU and pids limits, the node's container user,
all capabilities dropped, no-new-privileges, the json-file log limits, open stdin, and
a bind-mounted data directory owned by that user as the working directory. Fields:
p50_s, p99_s (ours), reference = docker p50, ratio = ours p50 / docker p50. Goal:
ratio <= 1.3, p99 <= 0.6 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import docker
from aiohttp import web

from agent.config import AgentConfig
from agent.daemon import running_agent
from agent.enrolment import enrol
from agent.fleet.data_dir import release_mounts_beneath
from common.cancellation import cancel_and_wait
from common.ports import free_ports
from controlplane.app import build_app
from controlplane.config import ControlPlaneConfig

IMAGE = os.environ.get("ENCEDEUS_TEST_IMAGE", "encedeus/busybox:latest")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
COMMAND = "trap 'exit 0' TERM; while true; do sleep 1; done"
CPU, MEMORY = "100m", "128Mi"  # the deployment's resources; the reference's limits
LABEL = ("encedeus.bench", f"submit-{uuid.uuid4().hex[:8]}")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, token: str = "", **kw: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kw) as response:
        body = await response.json(content_type=None)
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {body}")
        return body


class RunningEvents:
    """When each deployment was first reported `running` on the notifications socket."""

    def __init__(self) -> None:
        self.seen: dict[str, asyncio.Future[float]] = {}

    def wait(self, deployment_id: str) -> asyncio.Future[float]:
        return self.seen.setdefault(deployment_id, asyncio.get_running_loop().create_future())

    async def read(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        async for message in socket:
            event = json.loads(message.data)
            if event.get("type") != "deployment_status_changed":
                continue
            if event["data"].get("status") == "running":
                arrived = self.wait(event["deployment_id"])
                if not arrived.done():
                    arrived.set_result(time.perf_counter())


async def _one_round(
    http: aiohttp.ClientSession, base: str, token: str, events: RunningEvents, n: int
) -> float:
    body = {
        "app_name": f"bench-{n}",
        "image": IMAGE,
        "command": COMMAND,
        "stop_timeout": 1,
        "resources": {"cpu": CPU, "memory": MEMORY},
    }
    started = time.perf_counter()
    created = await _call(http, "POST", f"{base}/v1/deployments", token, json=body)
    async with asyncio.timeout(30):
        elapsed = await events.wait(created["id"]) - started
    status = await _call(http, "GET", f"{base}/v1/deployments/{created['id']}/status", token)
    if status["replicas"]["available"] < 1:
        raise RuntimeError(f"reported running but not available: {status}")
    await _call(http, "DELETE", f"{base}/v1/deployments/{created['id']}", token)
    return elapsed


@dataclass(frozen=True)
class Reference:
    """What the agent gives every container, for `docker run` (see the module doc)."""

    network: str
    user: str
    pids_limit: int
    log_max_size: str
    log_max_files: int
    data_root: Path

    @classmethod
    def of(cls, config: AgentConfig, data_root: Path) -> Reference:
        return cls(
            network=config.network,
            user=config.container_user,
            pids_limit=config.default_pids_limit,
            log_max_size=config.log_max_size,
            log_max_files=config.log_max_files,
            data_root=data_root,
        )

    def argv(self, name: str, data_dir: Path) -> list[str]:
        return [
            "docker", "run", "-d", "-i", "--name", name, "--label", "=".join(LABEL),
            "--network", self.network, "--user", self.user,
            "--memory", MEMORY.replace("Mi", "m"), "--memory-swap", MEMORY.replace("Mi", "m"),
            "--cpus", str(int(CPU.removesuffix("m")) / 1000),
            "--pids-limit", str(self.pids_limit),
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--log-driver", "json-file", "--log-opt", f"max-size={self.log_max_size}",
            "--log-opt", f"max-file={self.log_max_files}",
            "-v", f"{data_dir}:/data", "-w", "/data",
            IMAGE, "/bin/sh", "-c", COMMAND,
        ]  # fmt: skip

    def round(self, n: int) -> float:
        """One container like a replica's: its data directory, then `docker run -d`."""
        started = time.perf_counter()
        data_dir = self.data_root / f"ref-{n}"
        data_dir.mkdir(mode=0o750)
        uid, gid = (int(part) for part in self.user.split(":"))
        os.chown(data_dir, uid, gid)
        argv = self.argv(f"{LABEL[1]}-{n}", data_dir)
        subprocess.run(argv, check=True, capture_output=True)
        return time.perf_counter() - started


def _remove_docker_containers() -> None:
    client = docker.from_env()
    try:
        for container in client.containers.list(
            all=True, filters={"label": "=".join(LABEL)}, ignore_removed=True
        ):
            container.remove(force=True)
    finally:
        client.close()


async def _ours(root: Path) -> tuple[list[float], Reference]:
    [port] = free_ports(1)
    config = ControlPlaneConfig(
        listen_address="127.0.0.1", port=port, data_dir=root / "cp", auth_rate_limit=10_000
    )
    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            account = {
                "username": "bench",
                "email": "bench@example.com",
                "password": "bench-pass-1",
            }
            token = (await _call(http, "POST", f"{base}/v1/auth/register", json=account))[
                "access_token"
            ]
            node = await _call(http, "POST", f"{base}/v1/nodes", token, json={"name": "local"})
            agent_config = AgentConfig.model_validate(
                {
                    "data_dir": str(root / "agent"),
                    "controlplane_url": base,
                    "join_token": node["join_token"],
                    **{
                        name: {"host": "127.0.0.1", "port": port}
                        for name, port in zip(("grpc", "http", "sftp"), free_ports(3), strict=True)
                    },
                    "labels": {LABEL[0]: LABEL[1]},
                    "watchdog": False,
                }
            )
            identity = await enrol(agent_config)
            async with (
                running_agent(agent_config, identity),
                http.ws_connect(
                    f"{base}/v1/ws/notifications", headers={"Authorization": f"Bearer {token}"}
                ) as socket,
            ):
                events = RunningEvents()
                reader = asyncio.create_task(events.read(socket))
                try:
                    await _wait_node_ready(http, base, token, node["id"])
                    await _one_round(http, base, token, events, -1)  # warm-up
                    rounds = [await _one_round(http, base, token, events, n) for n in range(ROUNDS)]
                finally:
                    await cancel_and_wait(reader)
                return rounds, Reference.of(agent_config, root / "reference")
    finally:
        await runner.cleanup()


async def _wait_node_ready(http: aiohttp.ClientSession, base: str, token: str, node: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = await _call(http, "GET", f"{base}/v1/nodes/{node}", token)
        if info["status"] == "ready" and info["last_seen"]:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the local agent did not become ready")


async def main() -> None:
    try:
        with tempfile.TemporaryDirectory() as scratch:
            ours, docker_run = await _ours(Path(scratch))
            docker_run.data_root.mkdir()
            await asyncio.to_thread(docker_run.round, -1)  # warm-up
            reference = [await asyncio.to_thread(docker_run.round, n) for n in range(ROUNDS)]
            await asyncio.to_thread(_remove_docker_containers)
            # The agent mounted each replica's data directory (nosuid,nodev) in it.
            await asyncio.to_thread(release_mounts_beneath, Path(scratch))
    finally:
        await asyncio.to_thread(_remove_docker_containers)
    p50, p99 = statistics.median(ours), _percentile(ours, 0.99)
    docker_p50 = statistics.median(reference)
    print(f"ours: p50 {p50:.3f}s p99 {p99:.3f}s; docker run -d: p50 {docker_p50:.3f}s")
    print(
        json.dumps(
            {
                "bench": "submit_to_running",
                "value": round(p50, 4),
                "reference": round(docker_p50, 4),
                "ratio": round(p50 / docker_p50, 2),
                "unit": "s",
                "p50_s": round(p50, 4),
                "p99_s": round(p99, 4),
                "reference_p99_s": round(_percentile(reference, 0.99), 4),
                "load1": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
