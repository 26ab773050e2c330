"""The ingress end to end: a control plane, one agent with the ingress role (its own
Caddy on loopback), busybox httpd deployments on the real dockerd, and curl."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.ports import free_ports
from tests.conftest import TEST_IMAGE
from tests.docker_support import docker_engine
from tests.e2e.cluster_support import (
    Cluster,
    add_agent,
    eventually,
    remove_session_containers,
    session_containers,
    sign_in_admin,
    start_controlplane,
    wait_healthy,
)
from tests.e2e.ingress_support import SUFFIX, Ingress, caddy_of

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
# Each replica serves its own container hostname, so answers tell replicas apart.
HTTPD = 'echo "$HOSTNAME" > /data/index.html && exec httpd -f -p 8080 -h /data'


@pytest.fixture(scope="module")
def ingress_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Ingress]]:
    root: Path = tmp_path_factory.mktemp("ingress")
    http_port, https_port = free_ports(2)
    running = start_controlplane(
        root,
        {
            "domain_suffix": SUFFIX,
            "ingress_tls": "internal",
            "ingress_public_port": https_port,
        },
    )
    agent: dict[str, object] = {
        "publish_address": "127.0.0.1",
        "ingress": {
            "enabled": True,
            "listen_host": "127.0.0.1",
            "http_port": http_port,
            "https_port": https_port,
        },
    }

    async def assemble() -> None:
        await wait_healthy(running)
        await sign_in_admin(running)
        await add_agent(running, "edge", (31600, 31699), agent)

    try:
        asyncio.run(assemble())
        yield running, Ingress(http_port, https_port, root / "edge")
    finally:
        for process in running.agents.values():
            process.stop()
        running.controlplane.stop()
        remove_session_containers()


async def _deploy(cluster: Cluster, name: str, replicas: int = 1) -> dict[str, Any]:
    body = {
        "app_name": name,
        "image": TEST_IMAGE,
        "command": HTTPD,
        "ports": [8080],
        "replicas": replicas,
        "stop_timeout": 1,
    }
    created: dict[str, Any] = await cluster.request("POST", "/v1/deployments", 201, json=body)
    return created


async def _ready(cluster: Cluster, deployment_id: str, count: int) -> None:
    async def check() -> bool:
        status = await cluster.request("GET", f"/v1/deployments/{deployment_id}/status")
        return bool(status["replicas"]["ready"] == count)

    await eventually(check, timeout=60)


def _until(check: Any, timeout: float = 10.0) -> Any:
    """Poll a synchronous check until it is truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s; last: {last!r}")


def test_app_is_served_balanced_healed_stopped_and_removed(
    ingress_cluster: tuple[Cluster, Ingress],
) -> None:
    cluster, ingress = ingress_cluster
    host = f"web.{SUFFIX}"
    created = asyncio.run(_deploy(cluster, "web"))
    assert created["url"] == f"https://{host}:{ingress.https_port}"
    deployment_id = created["id"]
    asyncio.run(_ready(cluster, deployment_id, 1))
    first = _until(lambda: (a := ingress.get(host)).status == 200 and a)
    assert first.body.strip()

    # Unknown hosts get a 404 page, never an empty 200.
    missing = ingress.get(f"nothing.{SUFFIX}")
    assert missing.status == 404
    assert "no app" in missing.body

    # Scaled to 3: every replica answers within 30 requests.
    asyncio.run(
        cluster.request("PATCH", f"/v1/deployments/{deployment_id}/scale", json={"replicas": 3})
    )
    asyncio.run(_ready(cluster, deployment_id, 3))

    def three_answer() -> bool:
        answers = Counter(ingress.get(host).body.strip() for _ in range(30))
        return len(answers) == 3 and "" not in answers

    _until(three_answer, timeout=15)

    # One container killed: no request fails (passive health check and retries).
    with docker_engine() as client:
        victim = session_containers({"encedeus.deployment": deployment_id})[0]
        client.containers.get(victim.id).kill()
    statuses = Counter(ingress.get(host).status for _ in range(30))
    assert statuses == Counter({200: 30}), statuses

    # HTTPS with Caddy's internal CA, checked against its root only.
    secure = _until(lambda: (a := ingress.get(host, https=True)).status == 200 and a)
    assert secure.body.strip()

    # Stopped: a plain 503 page. Deleted: 404.
    asyncio.run(cluster.request("POST", f"/v1/deployments/{deployment_id}/stop"))
    stopped = _until(lambda: (a := ingress.get(host)).status == 503 and a)
    assert "stopped" in stopped.body
    asyncio.run(cluster.request("DELETE", f"/v1/deployments/{deployment_id}"))
    _until(lambda: ingress.get(host).status == 404)


def test_caddy_restarted_empty_gets_every_route_back(
    ingress_cluster: tuple[Cluster, Ingress],
) -> None:
    cluster, ingress = ingress_cluster
    host = f"again.{SUFFIX}"
    created = asyncio.run(_deploy(cluster, "again"))
    asyncio.run(_ready(cluster, created["id"], 1))
    _until(lambda: ingress.get(host).status == 200)
    caddy = caddy_of(cluster, "edge")
    caddy.send_signal(signal.SIGKILL)
    caddy.wait(5)
    started = time.monotonic()
    _until(lambda: ingress.get(host).status == 200, timeout=5)
    assert time.monotonic() - started < 5
    assert caddy_of(cluster, "edge").pid != caddy.pid
