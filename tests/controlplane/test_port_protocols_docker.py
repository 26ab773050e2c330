"""A UDP port on the real dockerd: a deployment's `{"port": N, "protocol": "udp"}` is
published as UDP (docker inspect) and a datagram sent to the node's port reaches the
server and its answer comes back; `tcp+udp` publishes one host port for both. The
server is Python's socket module in the Debian base image (the test busybox's `nc`
has no UDP mode)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.agent_image_support import debian_base_image
from tests.controlplane.accounts_support import expect_json, register
from tests.controlplane.cluster_support import FAST, enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client
from tests.docker_support import labelled_containers

pytestmark = [pytest.mark.docker, SQLITE_ONLY]
UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
print("listening", flush=True)
while True:
    data, sender = s.recvfrom(512)
    s.sendto(b"echo " + data, sender)
"""


def udp_round_trip(port: int, payload: bytes) -> bytes:
    """Send `payload` to 127.0.0.1:`port` and wait briefly for the answer (blocking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            return sock.recvfrom(512)[0]
        except TimeoutError:
            return b""


@pytest.fixture(scope="module")
def base_image() -> str:
    return debian_base_image()


async def test_a_udp_port_is_published_as_udp_and_datagrams_round_trip(
    make_config: ConfigFactory, tmp_path: Path, base_image: str
) -> None:
    client = await start_client(make_config(**FAST))
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a"):
            h = admin.headers
            created = await expect_json(await client.post("/v1/deployments", json={
                "app_name": "udp-echo", "image": base_image,
                "command": ["python3", "-c", UDP_ECHO],
                "ports": [{"port": 5353, "protocol": "udp"}, {"port": 7000,
                          "protocol": "tcp+udp"}],
            }, headers=h), 201)  # fmt: skip
            url = f"/v1/deployments/{created['id']}"

            async def listening() -> Any:
                logs = await expect_json(await client.get(f"{url}/logs?tail=5", headers=h))
                return any(e["message"] == "listening" for e in logs["logs"])

            await eventually(listening, timeout=30)
            status = await expect_json(await client.get(f"{url}/status", headers=h))
            [instance] = status["instances"]
            udp, both = instance["ports"]
            assert (udp["container_port"], udp["protocol"]) == (5353, "udp")
            assert (both["container_port"], both["protocol"]) == (7000, "tcp+udp")

            [container] = labelled_containers({"encedeus.deployment": created["id"]})
            bindings = container.attrs["HostConfig"]["PortBindings"]
            assert set(bindings) == {"5353/udp", "7000/tcp", "7000/udp"}
            assert bindings["5353/udp"][0]["HostPort"] == str(udp["host_port"])
            assert bindings["7000/tcp"][0]["HostPort"] == str(both["host_port"])
            assert bindings["7000/udp"][0]["HostPort"] == str(both["host_port"])

            async def answered() -> bytes:
                return await asyncio.to_thread(udp_round_trip, udp["host_port"], b"ping")

            assert await eventually(answered, timeout=10) == b"echo ping"
    finally:
        await client.close()
