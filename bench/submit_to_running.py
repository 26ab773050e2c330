"""Submit-to-running latency: `POST /v1/deployments` until every replica runs.

One control plane (embedded SQLite, default settings) and one local agent enrolled
through the API, both in this process, on the local dockerd with the test image
present. Each round creates a one-replica deployment and polls its status until the
replica is running; the reference is `docker run -d` of the same image and command,
timed the same way, in the same run. Fields: p50_s, p99_s (ours), reference = docker
p50, ratio = ours p50 / docker p50.
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
from pathlib import Path
from typing import Any

import aiohttp
import docker
from aiohttp import web

from agent.config import AgentConfig
from agent.daemon import running_agent
from agent.enrolment import enrol
from common.ports import free_ports
from controlplane.app import build_app
from controlplane.config import ControlPlaneConfig

IMAGE = os.environ.get("ENCEDEUS_TEST_IMAGE", "encedeus/busybox:latest")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
COMMAND = "trap 'exit 0' TERM; while true; do sleep 1; done"
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


async def _one_round(http: aiohttp.ClientSession, base: str, token: str, n: int) -> float:
    body = {"app_name": f"bench-{n}", "image": IMAGE, "command": COMMAND, "stop_timeout": 1}
    started = time.perf_counter()
    created = await _call(http, "POST", f"{base}/v1/deployments", token, json=body)
    status_url = f"{base}/v1/deployments/{created['id']}/status"
    while True:
        status = await _call(http, "GET", status_url, token)
        if status["replicas"]["available"] >= 1:
            elapsed = time.perf_counter() - started
            break
        await asyncio.sleep(0.005)
    await _call(http, "DELETE", f"{base}/v1/deployments/{created['id']}", token)
    return elapsed


def _docker_round(n: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["docker", "run", "-d", "--label", "=".join(LABEL), "--network", "none",
         "--name", f"{LABEL[1]}-{n}", IMAGE, "sh", "-c", COMMAND],
        check=True, capture_output=True,
    )  # fmt: skip
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


async def _ours(root: Path) -> list[float]:
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
            async with running_agent(agent_config, identity):
                await _wait_node_ready(http, base, token, node["id"])
                await _one_round(http, base, token, -1)  # warm-up
                return [await _one_round(http, base, token, n) for n in range(ROUNDS)]
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
            ours = await _ours(Path(scratch))
        _docker_round(-1)  # warm-up
        reference = [await asyncio.to_thread(_docker_round, n) for n in range(ROUNDS)]
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
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
