"""The ingress end to end: a control plane, one agent with the ingress role (its own
Caddy on loopback), busybox httpd deployments on the real dockerd, and curl."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.ingress.caddy_config import MAX_FAILS
from common.outbound import OutboundPolicy
from common.ports import free_ports
from controlplane.ingress.verify import http_proof
from tests.conftest import TEST_IMAGE
from tests.docker_support import docker_engine
from tests.e2e.cluster_support import (
    BIN,
    Cluster,
    add_agent,
    eventually,
    remove_session_containers,
    session_containers,
    sign_in_admin,
    start_controlplane,
    wait_healthy,
)
from tests.e2e.ingress_support import SUFFIX, Ingress, caddy_of, txt_server

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
# Each replica serves its own container hostname, so answers tell replicas apart.
HTTPD = 'echo "$HOSTNAME" > /data/index.html && exec httpd -f -p 8080 -h /data'


@pytest.fixture(scope="module")
def ingress_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Ingress]]:
    root: Path = tmp_path_factory.mktemp("ingress")
    http_port, https_port, dns_port = free_ports(3)
    running = start_controlplane(
        root,
        {
            "domain_suffix": SUFFIX,
            "ingress_tls": "internal",
            "ingress_public_port": https_port,
            # The test's own dnsmasq answers the TXT checks; the machine's resolver
            # is never asked or changed.
            "domain_nameservers": [f"127.0.0.1:{dns_port}"],
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
        yield running, Ingress(http_port, https_port, root / "edge", dns_port)
    finally:
        for process in running.agents.values():
            process.stop()
        running.controlplane.stop()
        remove_session_containers()


async def _deploy(cluster: Cluster, name: str, **fields: Any) -> dict[str, Any]:
    body = {
        "app_name": name,
        "image": TEST_IMAGE,
        "command": HTTPD,
        "ports": [8080],
        "replicas": 1,
        "stop_timeout": 1,
        **fields,
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

    # One container killed: a dial that fails is retried elsewhere; a connection that
    # Docker's port proxy accepts and then drops fails its request, until the replica's
    # exit reaches the route table or MAX_FAILS of them trip the passive health check
    # (usually the table comes first, and one request fails at most): none after that.
    with docker_engine() as client:
        victim = session_containers({"encedeus.deployment": deployment_id})[0]
        client.containers.get(victim.id).kill()
    statuses = [ingress.get(host).status for _ in range(30)]
    failed = [i for i, status in enumerate(statuses) if status != 200]
    assert len(failed) <= MAX_FAILS, statuses
    assert Counter(ingress.get(host).status for _ in range(30)) == Counter({200: 30})

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
    # The web port is the second one: only it has a server behind it.
    created = asyncio.run(_deploy(cluster, "again", ports=[7000, 8080], http_port=8080))
    asyncio.run(_ready(cluster, created["id"], 1))
    _until(lambda: ingress.get(host).status == 200)
    # The agent's publish_address: container ports are bound on loopback only.
    (container,) = session_containers({"encedeus.deployment": created["id"]})
    bindings = container.attrs["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for spec in bindings.values() for b in spec} == {"127.0.0.1"}
    caddy = caddy_of(cluster, "edge")
    caddy.send_signal(signal.SIGKILL)
    caddy.wait(5)
    started = time.monotonic()
    _until(lambda: ingress.get(host).status == 200, timeout=5)
    assert time.monotonic() - started < 5
    assert caddy_of(cluster, "edge").pid != caddy.pid


def _run_cli(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run the real `encedeus` client against the cluster."""
    env = {**os.environ, "ENCEDEUS_URL": cluster.url, "ENCEDEUS_TOKEN": cluster.token,
           "ENCEDEUS_CREDENTIALS": str(cluster.root / "credentials.json")}  # fmt: skip
    return subprocess.run(
        [str(BIN / "encedeus"), *argv], capture_output=True, text=True, env=env, check=False
    )


def _cli(cluster: Cluster, *argv: str) -> str:
    """Run the real `encedeus` client against the cluster; its stdout (exit 0 only)."""
    done = _run_cli(cluster, *argv)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _other_account(cluster: Cluster) -> dict[str, str]:
    body = {"username": "rival", "email": "rival@example.com", "password": "correct-horse-7"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(cluster.url + "/v1/auth/register", json=body) as response,
    ):
        answer = await response.json()
        assert response.status == 201, answer
        return {"Authorization": f"Bearer {answer['access_token']}"}


async def _call(cluster: Cluster, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, cluster.url + path, **kw) as response,
    ):
        return response.status, await response.json(content_type=None)


def test_custom_domain_verified_by_txt_is_served_over_https(
    ingress_cluster: tuple[Cluster, Ingress],
) -> None:
    cluster, ingress = ingress_cluster
    created = asyncio.run(_deploy(cluster, "shop"))
    domains = f"/v1/deployments/{created['id']}/domains"
    claim = asyncio.run(cluster.request("POST", domains, 201, json={"domain": "Shop.Example."}))
    assert (claim["domain"], claim["state"]) == ("shop.example", "pending_verification")
    token = claim["verification"]["token"]
    assert claim["verification"]["txt_name"] == "_encedeus.shop.example"
    ask = "/v1/ingress/ask?domain=shop.example"
    assert asyncio.run(_call(cluster, "GET", ask))[0] == 404
    for bad in ("1.2.3.4", "[::1]", SUFFIX, f"x.{SUFFIX}", "bad_name.com", "nodot"):
        status, body = asyncio.run(_call(cluster, "POST", domains, json={"domain": bad},
                                         headers=cluster.headers))  # fmt: skip
        assert (status, body["error"]["code"]) == (400, "invalid_domain"), bad

    asyncio.run(_ready(cluster, created["id"], 1))
    with txt_server(ingress.dns_port, {"_encedeus.shop.example": token}, cluster.root):
        verified = asyncio.run(cluster.request("POST", f"{domains}/shop.example/verify", json={}))
    assert verified["state"] == "verified"
    assert asyncio.run(_call(cluster, "GET", ask))[0] == 200
    assert asyncio.run(_call(cluster, "GET", "/v1/ingress/ask?domain=else.example"))[0] == 404
    # An app's own name gets a certificate too; a name no app has does not.
    assert asyncio.run(_call(cluster, "GET", f"/v1/ingress/ask?domain=shop.{SUFFIX}"))[0] == 200
    assert asyncio.run(_call(cluster, "GET", f"/v1/ingress/ask?domain=nope.{SUFFIX}"))[0] == 404
    listed = asyncio.run(cluster.request("GET", domains))
    assert [d["state"] for d in listed["domains"]] == ["verified"]
    # The client shows the same, and the app's URL.
    assert "shop.example" in _cli(cluster, "domains", "ls", "shop")
    assert f"https://shop.{SUFFIX}:{ingress.https_port}/" in _cli(cluster, "status", "shop")

    secure = _until(lambda: (a := ingress.get("shop.example", https=True)).status == 200 and a)
    assert secure.body.strip()

    # Another account cannot claim a name verified by this one.
    async def rival_claims() -> tuple[int, Any]:
        headers = await _other_account(cluster)
        body = {"app_name": "rival", "image": TEST_IMAGE, "command": HTTPD, "ports": [8080]}
        status, theirs = await _call(cluster, "POST", "/v1/deployments", json=body,
                                     headers=headers)  # fmt: skip
        assert status == 201, theirs
        path = f"/v1/deployments/{theirs['id']}/domains"
        return await _call(cluster, "POST", path, json={"domain": "shop.example"},
                           headers=headers)  # fmt: skip

    status, refused = asyncio.run(rival_claims())
    assert (status, refused["error"]["code"]) == (409, "domain_taken")

    asyncio.run(cluster.request("DELETE", f"{domains}/shop.example"))
    _until(lambda: ingress.get("shop.example").status == 404, timeout=3)


def test_pending_domain_tokens_are_served_for_their_domain_and_checked_safely(
    ingress_cluster: tuple[Cluster, Ingress],
) -> None:
    cluster, ingress = ingress_cluster
    created = asyncio.run(_deploy(cluster, "token"))
    domains = f"/v1/deployments/{created['id']}/domains"
    # Claimed with the client, which says how to prove it.
    added = _cli(cluster, "domains", "add", "token", "tok.example")
    assert "tok.example: pending_verification" in added
    (claim,) = asyncio.run(cluster.request("GET", domains))["domains"]
    token = claim["verification"]["token"]
    path = claim["verification"]["http_path"]
    assert path == f"/.well-known/encedeus/{token}"
    assert f"_encedeus.tok.example  =  {token}" in added
    assert f"HTTP at {path}" in added
    # The ingress serves the token for its own domain only.
    served = _until(lambda: (a := ingress.get("tok.example", path)).status == 200 and a)
    assert served.body == token
    assert ingress.get("other.example", path).status == 404
    # Neither proof is there (no TXT record; the HTTP check may not reach loopback):
    # the client fails with the reason and the claim stays pending.
    refused = _run_cli(cluster, "domains", "verify", "token", "tok.example")
    assert refused.returncode != 0
    assert "verification token was not found (HTTP 422)" in refused.stderr, refused.stderr
    assert "pending_verification" in _cli(cluster, "domains", "ls", "token")
    private = OutboundPolicy(allow_private=True, timeout_seconds=5)
    assert "404" in asyncio.run(http_proof("localhost", token, private, ingress.http_port))

    # The checker accepts the token from the domain's server (here a local one), and
    # the guarded client refuses loopback unless the operator allowed private
    # addresses (domain_check_allow_private): a tenant's DNS cannot aim it inwards.
    async def check() -> tuple[str, str]:
        async def serve(request: web.Request) -> web.Response:
            return web.Response(text=token if request.path == path else "no")

        app = web.Application()
        app.router.add_get("/{tail:.*}", serve)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        try:
            allowed = await http_proof("localhost", token, private, port)
            refused = await http_proof("localhost", token, OutboundPolicy(), port)
        finally:
            await runner.cleanup()
        return allowed, refused

    allowed, refused_loopback = asyncio.run(check())
    assert allowed == ""
    assert "refused" in refused_loopback.lower()

    # Removed with the client: its token is not served any more, at once.
    _cli(cluster, "domains", "rm", "token", "tok.example")
    assert asyncio.run(cluster.request("GET", domains))["domains"] == []
    _until(lambda: ingress.get("tok.example", path).status == 404, timeout=3)
