"""Image pull through a deployment vs. `docker pull`, from the same registry.

An image of about 50 MiB (the test image plus LAYERS layers of random bytes, built
with `docker build` from the local base: no network) is pushed under a unique name to
the loopback test registry of scripts/setup-system.sh (htpasswd auth). One control
plane (embedded SQLite) and one local agent run in this process. Each round removes
the image from the engine, then (in alternating order) times

- ours: `POST /v1/deployments` with `registry_auth` until the replica's pull is done
  (its status shows the pinned digest and it is no longer `pulling`), and
- the reference: the engine's pull of the same reference with the same credentials
  (`docker pull`, through the Docker API as the CLI does).

`value` = median ours, `reference` = median docker pull, `ratio` = value/reference.
Goal: ratio <= 1.15.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import docker
import docker.errors
from aiohttp import web

from agent.config import AgentConfig
from agent.daemon import running_agent
from agent.enrolment import enrol
from common.ports import free_ports
from controlplane.app import build_app
from controlplane.config import ControlPlaneConfig

BASE_IMAGE = os.environ.get("ENCEDEUS_TEST_IMAGE", "encedeus/busybox:latest")
REGISTRY = os.environ.get("ENCEDEUS_TEST_REGISTRY", "127.0.0.1:5000")
AUTH = {
    "username": os.environ.get("ENCEDEUS_TEST_REGISTRY_USER", "encedeus"),
    "password": os.environ.get("ENCEDEUS_TEST_REGISTRY_PASSWORD", "encedeus-registry"),
}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
LAYERS, LAYER_BYTES = 5, 10 * 2**20
COMMAND = "trap 'exit 0' TERM; while true; do sleep 1; done"
LABEL = ("encedeus.bench", f"pull-{uuid.uuid4().hex[:8]}")


def build_and_push(client: docker.DockerClient, repository: str) -> str:
    """Build the layered image, push it, and remove it locally; its reference."""
    with tempfile.TemporaryDirectory() as context:
        lines = [f"FROM {BASE_IMAGE}"]
        for index in range(LAYERS):
            Path(context, f"layer{index}.bin").write_bytes(os.urandom(LAYER_BYTES))
            lines.append(f"COPY layer{index}.bin /layers/layer{index}.bin")
        Path(context, "Dockerfile").write_text("\n".join(lines) + "\n")
        client.images.build(path=context, tag=f"{repository}:v1", rm=True, pull=False)
    for message in client.api.push(repository, "v1", auth_config=AUTH, stream=True, decode=True):
        if "error" in message:
            raise RuntimeError(f"push failed: {message['error']}")
    remove_local(client, repository)
    return f"{repository}:v1"


def remove_local(client: docker.DockerClient, repository: str) -> None:
    """Remove every local name of `repository` (and so the image and its layers)."""
    for image in client.api.images(name=repository):
        for name in (*(image.get("RepoTags") or ()), *(image.get("RepoDigests") or ())):
            if name.startswith(repository):
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_image(name)


def docker_pull(client: docker.DockerClient, reference: str) -> float:
    repository, _, tag = reference.rpartition(":")
    began = time.perf_counter()
    for message in client.api.pull(repository, tag, auth_config=AUTH, stream=True, decode=True):
        if "error" in message:
            raise RuntimeError(f"docker pull failed: {message['error']}")
    return time.perf_counter() - began


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, token: str = "", **kw: Any
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kw) as response:
        body = await response.json(content_type=None)
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {body}")
        return body


async def deployment_pull(
    http: aiohttp.ClientSession, base: str, token: str, reference: str, n: int
) -> float:
    body = {
        "app_name": f"pull-{n}",
        "image": reference,
        "command": COMMAND,
        "stop_timeout": 1,
        "registry_auth": AUTH,
    }
    began = time.perf_counter()
    created = await _call(http, "POST", f"{base}/v1/deployments", token, json=body)
    status_url = f"{base}/v1/deployments/{created['id']}/status"
    while True:
        instances = (await _call(http, "GET", status_url, token))["instances"]
        if instances and all(i["image_digest"] and i["state"] != "pulling" for i in instances):
            elapsed = time.perf_counter() - began
            break
        await asyncio.sleep(0.05)
    await _call(http, "DELETE", f"{base}/v1/deployments/{created['id']}", token)
    return elapsed


async def _wait_node_ready(http: aiohttp.ClientSession, base: str, token: str, node: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = await _call(http, "GET", f"{base}/v1/nodes/{node}", token)
        if info["status"] == "ready" and info["last_seen"]:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the local agent did not become ready")


async def run_rounds(
    root: Path, client: docker.DockerClient, reference: str
) -> tuple[list[float], list[float]]:
    repository = reference.rpartition(":")[0]
    [port] = free_ports(1)
    config = ControlPlaneConfig(
        listen_address="127.0.0.1", port=port, data_dir=root / "cp", auth_rate_limit=10_000
    )
    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    ours: list[float] = []
    theirs: list[float] = []
    try:
        async with aiohttp.ClientSession() as http:
            account = {"username": "bench", "email": "bench@example.com", "password": "bench-pw-1"}
            registered = await _call(http, "POST", f"{base}/v1/auth/register", json=account)
            token = registered["access_token"]
            node = await _call(http, "POST", f"{base}/v1/nodes", token, json={"name": "local"})
            ports = dict(zip(("grpc", "http", "sftp"), free_ports(3), strict=True))
            agent_config = AgentConfig.model_validate(
                {
                    "data_dir": str(root / "agent"),
                    "controlplane_url": base,
                    "join_token": node["join_token"],
                    **{name: {"host": "127.0.0.1", "port": p} for name, p in ports.items()},
                    "labels": {LABEL[0]: LABEL[1]},
                    "watchdog": False,
                }
            )
            identity = await enrol(agent_config)
            async with running_agent(agent_config, identity):
                await _wait_node_ready(http, base, token, node["id"])
                for n in range(ROUNDS):
                    for side in ("ours", "docker") if n % 2 else ("docker", "ours"):
                        await asyncio.to_thread(remove_local, client, repository)
                        if side == "ours":
                            ours.append(await deployment_pull(http, base, token, reference, n))
                        else:
                            theirs.append(await asyncio.to_thread(docker_pull, client, reference))
                        await asyncio.sleep(0.5)  # let the removal of the last round settle
    finally:
        await runner.cleanup()
    return ours, theirs


async def main() -> None:
    client = docker.from_env()
    repository = f"{REGISTRY}/bench-pull-{uuid.uuid4().hex[:8]}"
    try:
        reference = await asyncio.to_thread(build_and_push, client, repository)
        with tempfile.TemporaryDirectory() as scratch:
            ours, theirs = await run_rounds(Path(scratch), client, reference)
    finally:
        for container in client.containers.list(
            all=True, filters={"label": "=".join(LABEL)}, ignore_removed=True
        ):
            container.remove(force=True)
        await asyncio.to_thread(remove_local, client, repository)
        client.close()
    value, reference_s = statistics.median(ours), statistics.median(theirs)
    size = LAYERS * LAYER_BYTES / 2**20
    print(f"ours (deployment): {', '.join(f'{t:.2f}' for t in ours)} s")
    print(f"docker pull:       {', '.join(f'{t:.2f}' for t in theirs)} s")
    result = {
        "bench": "image_pull",
        "value": round(value, 3),
        "reference": round(reference_s, 3),
        "ratio": round(value / reference_s, 3),
        "unit": f"s (median pull of a {size:.0f} MiB, {LAYERS + 1}-layer image; "
        "reference: docker pull from the same registry)",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
