"""The agent's gRPC server: the Agent service behind node-secret auth, plus the
standard health service; TLS when a certificate is configured."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer  # health.aio is not in the stubs

from agent.rpc.auth import NodeSecretInterceptor
from agent.rpc.servicer import AgentService
from protos import agent_pb2_grpc as pb_grpc

SERVICE_NAME = "encedeus.agent.v1.Agent"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for a TLS port; with `client_ca_file`, clients must present a
    certificate signed by that CA (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(slots=True)
class GrpcEndpoint:
    """A started gRPC server and the port it is bound to."""

    server: grpc.aio.Server
    port: int
    health: HealthServicer

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def _credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    cert, key = await asyncio.gather(
        asyncio.to_thread(tls.cert_file.read_bytes), asyncio.to_thread(tls.key_file.read_bytes)
    )
    if tls.client_ca_file is None:
        return grpc.ssl_server_credentials([(key, cert)])
    client_ca = await asyncio.to_thread(tls.client_ca_file.read_bytes)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=True
    )


async def start_grpc_server(
    service: AgentService, *, secret: str, host: str, port: int, tls: TlsFiles | None = None
) -> GrpcEndpoint:
    """Bind host:port (0 = any free port) and start serving."""
    server = grpc.aio.server(
        interceptors=[NodeSecretInterceptor(secret)],
        options=[("grpc.keepalive_permit_without_calls", 1)],
    )
    pb_grpc.add_AgentServicer_to_server(service, server)
    checks = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is not None:
        bound = server.add_secure_port(address, await _credentials(tls))
    else:
        bound = server.add_insecure_port(address)
    await server.start()
    for name in ("", SERVICE_NAME):
        await checks.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcEndpoint(server=server, port=bound, health=checks)
