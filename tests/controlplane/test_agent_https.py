"""A node whose HTTP port serves TLS, through a real control plane and an enrolled
in-process agent: the console URL is wss://, transfer URLs are https:// and work for
a client that trusts the certificate, and the control plane's own file relays check
the certificate with `agent_ca_file`."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from agent.config import load_identity
from agent.daemon import RunningAgent, running_agent
from agent.enrolment import enrol
from tests.controlplane.accounts_support import Account, expect_json, register
from tests.controlplane.cluster_support import FAST, agent_config, create_node
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.test_deployments import _create, _ready, _wait_status
from tests.docker_support import remove_labelled_containers
from tests.listeners import agent_listeners
from tests.tls_support import Authority

pytestmark = pytest.mark.docker
Cluster = tuple[TestClient[Any, Any], Account, RunningAgent, ssl.SSLContext]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA file, server certificate, key) for 127.0.0.1, made off the event loop."""
    authority = Authority("agent https CA")
    issued = authority.issue("skyhook", server=True)
    directory = tmp_path_factory.mktemp("https-node")
    for name, data in (("ca.pem", authority.pem), ("cert.pem", issued.cert)):
        (directory / name).write_bytes(data)
    (directory / "key.pem").write_bytes(issued.key)
    return directory / "ca.pem", directory / "cert.pem", directory / "key.pem"


@pytest.fixture
async def cluster(
    make_config: ConfigFactory, tmp_path: Path, pki: tuple[Path, Path, Path]
) -> AsyncIterator[Cluster]:
    ca, cert, key = pki
    client = await start_client(make_config(agent_ca_file=str(ca), **FAST))
    files = {"cert_file": str(cert), "key_file": str(key)}
    listeners = agent_listeners()
    try:
        admin = await register(client)
        token = await create_node(client, admin, "https-node")
        config = agent_config(
            tmp_path / "agent",
            str(client.make_url("")),
            token,
            **{**listeners, "http": {**listeners["http"], **files}},
            tls=files,
        )
        identity = await enrol(config)
        assert await asyncio.to_thread(load_identity, config) == identity
        trusted = await asyncio.to_thread(ssl.create_default_context, cafile=str(ca))
        try:
            async with running_agent(config, identity) as agent:
                yield client, admin, agent, trusted
        finally:
            labels = {"encedeus.node": identity.node_id}
            await asyncio.to_thread(remove_labelled_containers, labels)
    finally:
        await client.close()


async def test_a_tls_node_is_handed_out_as_https_and_wss(cluster: Cluster) -> None:
    client, admin, agent, trusted = cluster
    owner = await register(client)
    dep = await _create(client, owner, replicas=1)
    await _wait_status(client, owner, dep, _ready(1))
    origin = f"https://127.0.0.1:{agent.http.port}"

    node = (await expect_json(await client.get("/v1/nodes", headers=admin.headers)))["nodes"][0]
    assert node["http_address"] == origin
    console = await expect_json(
        await client.get(f"/v1/deployments/{dep}/console", headers=owner.headers)
    )
    assert console["url"].startswith(f"wss://127.0.0.1:{agent.http.port}/api/servers/")
    files = f"/v1/deployments/{dep}/replicas/0/files"
    signed = await expect_json(
        await client.post(f"{files}/upload-url", json={"path": "/tls.txt"}, headers=owner.headers)
    )
    assert signed["url"].startswith(f"{origin}/api/servers/")
    async with aiohttp.ClientSession() as http:
        async with http.put(signed["url"], data=b"over tls", ssl=trusted) as response:
            assert response.status == 201
        async with http.ws_connect(console["url"], ssl=trusted) as ws:
            await ws.send_json({"event": "auth", "args": [console["token"]]})
            frame = json.loads(await ws.receive_str(timeout=10))
            assert frame["event"] == "auth success"
    # The relay (control plane → agent) checks the agent's certificate with its CA.
    listing = await expect_json(await client.get(f"{files}?path=/", headers=owner.headers))
    assert "tls.txt" in [entry["name"] for entry in listing["entries"]]
