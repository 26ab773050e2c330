"""gRPC over TLS (and mutual TLS) with a throwaway CA, against the in-process agent."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from agent.config import AgentConfig
from agent.daemon import RunningAgent
from protos import agent_pb2 as pb
from protos import agent_pb2_grpc as pb_grpc
from tests.agent.conftest import AUTH, agent_in_background, make_config
from tests.tls_support import Authority, Issued

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_blocking_calls")]
CALL_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Pki:
    """The node's CA and server certificate on disk, a client certificate of the same CA,
    and a foreign CA with its own client certificate."""

    ca: bytes
    ca_file: Path
    server_cert: Path
    server_key: Path
    client: Issued
    foreign_ca: bytes
    foreign_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    # Sync and module-scoped: key generation and file writes stay off the event loop.
    ca, foreign = Authority("encedeus test CA"), Authority("foreign CA")
    server = ca.issue("skyhook", server=True)
    directory = tmp_path_factory.mktemp("pki")
    (directory / "server.pem").write_bytes(server.cert)
    (directory / "server.key").write_bytes(server.key)
    (directory / "ca.pem").write_bytes(ca.pem)
    return Pki(
        ca=ca.pem,
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client=ca.issue("controlplane", server=False),
        foreign_ca=foreign.pem,
        foreign_client=foreign.issue("intruder", server=False),
    )


@contextlib.asynccontextmanager
async def tls_agent(tmp_path: Path, pki: Pki, **tls: Any) -> AsyncIterator[RunningAgent]:
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), **tls}
    config = make_config(tmp_path / "skyhook", f"node-{uuid.uuid4().hex[:8]}", tls=tls)
    async with agent_in_background(config) as running:
        yield running


@pytest.fixture
async def agent(tmp_path: Path, pki: Pki) -> AsyncIterator[RunningAgent]:
    async with tls_agent(tmp_path, pki) as running:
        yield running


@pytest.fixture
async def mutual_agent(tmp_path: Path, pki: Pki) -> AsyncIterator[RunningAgent]:
    async with tls_agent(tmp_path, pki, client_ca_file=str(pki.ca_file)) as running:
        yield running


def secure(
    agent: RunningAgent, root: bytes, client: Issued | None = None, host: str = "127.0.0.1"
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    return grpc.aio.secure_channel(f"{host}:{agent.grpc.port}", credentials)


async def node_info_code(channel: grpc.aio.Channel, metadata: Any = AUTH) -> grpc.StatusCode:
    """The status of one GetNodeInfo call (OK when it succeeded)."""
    async with channel:
        try:
            await pb_grpc.AgentStub(channel).GetNodeInfo(
                pb.GetNodeInfoRequest(), metadata=metadata, timeout=CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


async def test_tls_with_the_node_ca_and_secret(agent: RunningAgent, pki: Pki) -> None:
    async with secure(agent, pki.ca) as channel:
        stub = pb_grpc.AgentStub(channel)
        info = await stub.GetNodeInfo(pb.GetNodeInfoRequest(), metadata=AUTH, timeout=CALL_TIMEOUT)
        assert info.node_id == agent.identity.node_id
        watch = stub.Watch(pb.WatchRequest(heartbeat_interval_ms=100), metadata=AUTH)
        first = await watch.read()
        assert isinstance(first, pb.WatchEvent)
        assert first.HasField("heartbeat")
        watch.cancel()
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    # The certificate names localhost too.
    assert await node_info_code(secure(agent, pki.ca, host="localhost")) == grpc.StatusCode.OK


async def test_tls_refuses_wrong_secret_plaintext_and_foreign_ca(
    agent: RunningAgent, pki: Pki
) -> None:
    wrong = (("authorization", "Bearer not-the-node-secret"),)
    assert await node_info_code(secure(agent, pki.ca), wrong) == grpc.StatusCode.UNAUTHENTICATED
    assert await node_info_code(secure(agent, pki.ca), ()) == grpc.StatusCode.UNAUTHENTICATED
    plaintext = grpc.aio.insecure_channel(f"127.0.0.1:{agent.grpc.port}")
    assert await node_info_code(plaintext) == grpc.StatusCode.UNAVAILABLE
    foreign = secure(agent, pki.foreign_ca)
    assert await node_info_code(foreign) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate_of_the_ca(
    mutual_agent: RunningAgent, pki: Pki
) -> None:
    agent = mutual_agent
    assert await node_info_code(secure(agent, pki.ca, pki.client)) == grpc.StatusCode.OK
    assert await node_info_code(secure(agent, pki.ca)) == grpc.StatusCode.UNAVAILABLE
    outsider = secure(agent, pki.ca, pki.foreign_client)
    assert await node_info_code(outsider) == grpc.StatusCode.UNAVAILABLE
    # A trusted certificate does not replace the node secret.
    wrong = (("authorization", "Bearer not-the-node-secret"),)
    trusted = secure(agent, pki.ca, pki.client)
    assert await node_info_code(trusted, wrong) == grpc.StatusCode.UNAUTHENTICATED


def test_client_ca_needs_a_server_certificate() -> None:
    with pytest.raises(ValidationError, match="client_ca_file needs cert_file"):
        AgentConfig.model_validate({"tls": {"client_ca_file": "/ca.pem"}})
