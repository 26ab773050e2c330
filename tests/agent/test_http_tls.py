"""The agent's HTTP port over TLS (https, wss) with a certificate made in the test:
a client that trusts it gets /health and a working console socket; plain http and a
client that does not trust it get nothing; GetNodeInfo tells the https URL."""

from __future__ import annotations

import asyncio
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc.aio
import pytest
from pydantic import ValidationError

from agent.config import AgentConfig, HttpListen
from agent.daemon import RunningAgent
from agent.ws.server import server_tls_context
from common.config import ConfigError
from common.tokens import sign_server_token
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, ECHO, SECRET, agent_in_background, make_config, spec
from tests.agent.ws_support import next_frame
from tests.tls_support import Authority

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """(cert file, key file, the CA a client trusts); made off the event loop."""
    authority = Authority("agent https test CA")
    issued = authority.issue("skyhook", server=True)
    directory = tmp_path_factory.mktemp("agent-https")
    (directory / "cert.pem").write_bytes(issued.cert)
    (directory / "key.pem").write_bytes(issued.key)
    return directory / "cert.pem", directory / "key.pem", authority.pem


@pytest.fixture
async def agent(
    tmp_path: Path, certificate: tuple[Path, Path, bytes]
) -> AsyncIterator[RunningAgent]:
    cert, key, _ = certificate
    http = {"host": "127.0.0.1", "port": 0, "cert_file": str(cert), "key_file": str(key)}
    config = make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}", http=http)
    async with agent_in_background(config) as running:
        yield running


def trusting(ca: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.decode("ascii"))


async def test_https_and_wss_for_a_client_that_trusts_the_certificate(
    agent: RunningAgent, certificate: tuple[Path, Path, bytes]
) -> None:
    base = f"https://127.0.0.1:{agent.http.port}"
    server = spec("echo booted; " + ECHO)
    await agent.supervisor.create(server, start=True)
    token = sign_server_token(
        SECRET,
        node_id=agent.identity.node_id,
        user_id="user-1",
        server_id=server.id,
        permissions=["*"],
        scope="console",
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health", ssl=trusting(certificate[2])) as response:
            assert response.status == 200
        wss = f"wss://127.0.0.1:{agent.http.port}/api/servers/{server.id}/ws"
        async with http.ws_connect(wss, ssl=trusting(certificate[2])) as ws:
            await ws.send_json({"event": "auth", "args": [token]})
            await next_frame(ws, "auth success")
            # The command once the server reads its input (sent earlier, it could be
            # lost before the console attached, and the stats frames kept the loop
            # below from ever timing out).
            while await next_frame(ws, "console output") != ["booted"]:
                pass
            await ws.send_json({"event": "send command", "args": ["over-tls"]})
            async with asyncio.timeout(10):
                while await next_frame(ws, "console output") != ["got over-tls"]:
                    pass


async def test_a_download_over_tls(
    agent: RunningAgent, certificate: tuple[Path, Path, bytes]
) -> None:
    """sendfile cannot encrypt: the body goes through the TLS transport in chunks."""
    server_id = str(uuid.uuid4())
    directory = Path(agent.config.data_dir) / "volumes" / server_id
    data = os.urandom(3 * 1024 * 1024 + 5)
    await asyncio.to_thread(directory.mkdir, parents=True)
    await asyncio.to_thread((directory / "f.bin").write_bytes, data)
    token = sign_server_token(
        SECRET,
        node_id=agent.identity.node_id,
        user_id="user-1",
        server_id=server_id,
        permissions=["file.read"],
        scope="file-download",
        details={"path": "f.bin"},
    )
    url = f"https://127.0.0.1:{agent.http.port}/api/servers/{server_id}/files/download"
    query = {"path": "f.bin", "token": token}
    async with aiohttp.ClientSession() as http:
        for headers, expected in (({}, data), ({"Range": "bytes=1000-"}, data[1000:])):
            async with http.get(
                url, params=query, headers=headers, ssl=trusting(certificate[2])
            ) as response:
                assert response.status in (200, 206)
                assert await response.read() == expected


async def test_plain_http_and_untrusting_clients_get_nothing(agent: RunningAgent) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{agent.http.port}/health") as response:
                await response.read()
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"https://127.0.0.1:{agent.http.port}/health") as response:
                await response.read()


async def test_node_info_tells_the_https_url(agent: RunningAgent) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}") as channel:
        info = await pb_grpc.AgentStub(channel).GetNodeInfo(pb.GetNodeInfoRequest(), metadata=AUTH)
    assert info.http_url == f"https://127.0.0.1:{agent.http.port}"


def test_cert_and_key_go_together_and_the_public_url_is_a_url() -> None:
    with pytest.raises(ValidationError, match="cert_file and key_file"):
        HttpListen(port=1, cert_file="/c.pem")
    for bad in ("ftp://node-a:8081", "node-a:8081", "https://node-a/?x=1"):
        with pytest.raises(ValidationError, match="public_url"):
            HttpListen(port=1, public_url=bad)
    assert HttpListen(port=1, public_url="https://node-a.example.net/agent").public_url


def test_an_unusable_certificate_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    config = AgentConfig.model_validate(
        {"http": {"port": 0, "cert_file": str(tmp_path / "cert.pem"), "key_file": "/none"}}
    )
    with pytest.raises(ConfigError, match=r"agent\.http cert_file"):
        server_tls_context(config)
