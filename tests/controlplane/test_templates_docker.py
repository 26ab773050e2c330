"""A deployment from a template on the real dockerd: the done pattern turns it
running, the built-ins reach it (SERVER_PORT = the host port for ports without a
container port), console commands are answered and the stop command stops it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.controlplane.accounts_support import expect_json, register
from tests.controlplane.cluster_support import FAST, enrolled_agent, eventually
from tests.controlplane.conftest import SQLITE_ONLY, ConfigFactory, start_client

pytestmark = [pytest.mark.docker, SQLITE_ONLY]
TEMPLATE = """
id = "echo-game"
name = "Echo game"
images = { busybox = "encedeus/busybox:latest" }
startup = <<EOT
sleep 1
echo "{{GREETING}} on port $SERVER_PORT with {{SERVER_MEMORY}} MiB"
while read -r l; do [ "$l" = quit ] && echo bye && exit 0; echo "got $l"; done
EOT
done = "regex:on port [0-9]+ with"
stop {
  command = "quit"
  timeout_seconds = 5
}
port "game" {
  protocols = ["tcp", "udp"]
}
variable "GREETING" {
  default = "hello"
}
"""


async def test_a_template_server_runs_answers_and_stops(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await start_client(make_config(**FAST))
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a"):
            h = admin.headers
            await expect_json(await client.post("/v1/templates", data=TEMPLATE,
                              headers={**h, "Content-Type": "text/plain"}), 201)  # fmt: skip
            created = await expect_json(await client.post("/v1/deployments", json={
                "app_name": "game", "template": "echo-game", "variables": {"GREETING": "hi"},
            }, headers=h), 201)  # fmt: skip
            url = f"/v1/deployments/{created['id']}"

            async def running() -> Any:
                status = await expect_json(await client.get(f"{url}/status", headers=h))
                return status if status["replicas"]["ready"] == 1 else None

            status = await eventually(running, timeout=30)
            [instance] = status["instances"]
            logs = await expect_json(await client.get(f"{url}/logs?tail=5", headers=h))
            line = logs["logs"][-1]["message"]
            host_port = line.split("on port ")[1].split()[0]
            assert line == f"hi on port {host_port} with 128 MiB"
            assert str(host_port) in str(instance)
            await expect_json(await client.post(f"{url}/command", json={"command": "ping"},
                                                headers=h))  # fmt: skip

            async def answered() -> bool:
                logs = await expect_json(await client.get(f"{url}/logs?tail=5", headers=h))
                return any(e["message"] == "got ping" for e in logs["logs"])

            await eventually(answered)
            await expect_json(await client.post(f"{url}/stop", headers=h))

            async def said_bye() -> bool:
                logs = await expect_json(await client.get(f"{url}/logs?tail=5", headers=h))
                return any(e["message"] == "bye" for e in logs["logs"])

            await eventually(said_bye)
    finally:
        await client.close()
