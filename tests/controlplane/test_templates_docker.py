"""A deployment from a template on the real dockerd: the done pattern turns it
running, the built-ins reach it (SERVER_PORT = the host port for ports without a
container port), console commands are answered and the stop command stops it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protos import agent_pb2 as pb
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


async def _log_lines(client: Any, url: str, headers: dict[str, str]) -> list[str]:
    logs = await expect_json(await client.get(f"{url}/logs?tail=200", headers=headers))
    return [entry["message"] for entry in logs["logs"]]


async def test_the_bundled_sh_game_installs_runs_saves_and_keeps_its_state(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await start_client(make_config(**FAST))
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a") as agent:
            h = admin.headers
            created = await expect_json(await client.post("/v1/deployments", json={
                "app_name": "game", "template": "sh-game",
                "variables": {"WORLD_NAME": "e2e world", "DIFFICULTY": "hard"},
            }, headers=h), 201)  # fmt: skip
            url = f"/v1/deployments/{created['id']}"

            async def lines_with(text: str) -> list[str]:
                return [line for line in await _log_lines(client, url, h) if text in line]

            async def running() -> Any:
                status = await expect_json(await client.get(f"{url}/status", headers=h))
                return status if status["replicas"]["ready"] == 1 else None

            status = await eventually(running, timeout=60)
            [instance] = status["instances"]
            assert instance["install_state"] == "installed"
            assert instance["install_exit_code"] == 0
            assert await lines_with("installed server.sh")  # the install's own output
            [ready] = await lines_with("is ready for players")
            assert ready == "World e2e world is ready for players (count=0)"
            assert await lines_with("difficulty=hard")  # the config edit came first
            data = agent.supervisor.volumes.path(instance["id"])
            properties = (data / "game.properties").read_text().splitlines()
            host_port = instance["ports"][0]["host_port"]
            assert sorted(properties) == ["difficulty=hard", f"port={host_port}"]
            owner = agent.supervisor.volumes.owner_of(pb.ServerSpec())
            assert (data / "server.sh").stat().st_uid == owner[0]  # re-owned after install

            for line in ("add", "add", "say hello", "save"):
                await expect_json(await client.post(f"{url}/command", json={"command": line},
                                                    headers=h))  # fmt: skip
            assert await eventually(lambda: lines_with("Saved count=2"))
            assert await lines_with("[Server] hello")
            assert (data / "state.txt").read_text() == "2\n"
            assert (data / "state.txt").stat().st_uid == owner[0]
            await expect_json(await client.post(f"{url}/command", json={"command": "add"},
                                                headers=h))  # fmt: skip
            await expect_json(await client.post(f"{url}/stop", headers=h))
            assert await eventually(lambda: lines_with("Saved count=3, stopping"))

            async def stopped() -> bool:
                status = await expect_json(await client.get(f"{url}/status", headers=h))
                return all(i["state"] == "offline" for i in status["instances"])

            await eventually(stopped)
            [stopped_instance] = (await expect_json(
                await client.get(f"{url}/status", headers=h)))["instances"]  # fmt: skip
            assert stopped_instance["exit_code"] == 0
            assert (data / "state.txt").read_text() == "3\n"
            await expect_json(await client.post(f"{url}/start", headers=h))
            assert await eventually(lambda: lines_with("is ready for players (count=3)"), 30)
            assert len(await lines_with("installed server.sh")) == 1  # installed once

            reinstalled = await expect_json(await client.post(f"{url}/reinstall", headers=h))
            assert reinstalled["message"] == "Reinstalled 1 replica(s)"
            assert len(await lines_with("installed server.sh")) == 2

            async def started_again() -> bool:
                return len(await lines_with("is ready for players (count=3)")) == 2

            await eventually(started_again, 30)  # the reconciler starts it; state kept
    finally:
        await client.close()


async def test_the_bundled_static_site_and_batch_job_run(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    client = await start_client(make_config(**FAST))
    try:
        admin = await register(client)
        async with enrolled_agent(client, admin, tmp_path / "agent", "node-a") as agent:
            h = admin.headers
            site = await expect_json(await client.post("/v1/deployments", json={
                "app_name": "site", "template": "static-site",
                "variables": {"SITE_TITLE": "Hello from a template"},
            }, headers=h), 201)  # fmt: skip
            job = await expect_json(await client.post("/v1/deployments", json={
                "app_name": "job", "template": "batch-job", "variables": {"COUNT": "7"},
            }, headers=h), 201)  # fmt: skip

            async def page() -> str | None:
                status = await expect_json(
                    await client.get(f"/v1/deployments/{site['id']}/status", headers=h)
                )
                ports = [p for i in status["instances"] for p in i["ports"]]
                if status["replicas"]["ready"] != 1 or not ports:
                    return None
                async with aiohttp.ClientSession() as http:
                    url = f"http://127.0.0.1:{ports[0]['host_port']}/"
                    try:
                        async with http.get(url) as response:
                            return await response.text()
                    except aiohttp.ClientError:
                        return None

            text = await eventually(page, timeout=60)
            assert "<h1>Hello from a template</h1>" in text

            async def finished() -> Any:
                status = await expect_json(
                    await client.get(f"/v1/deployments/{job['id']}/status", headers=h)
                )
                done = [i for i in status["instances"] if i["exit_code"] == 0]
                return done[0] if done else None

            instance = await eventually(finished, timeout=60)
            result = agent.supervisor.volumes.path(instance["id"]) / "result.txt"
            assert await asyncio.to_thread(result.read_text) == "counted to 7\n"
            logs = await expect_json(
                await client.get(f"/v1/deployments/{job['id']}/logs?tail=3", headers=h)
            )
            assert [e["message"] for e in logs["logs"]][-2:] == ["step 7", "done"]
            assert instance["restart_count"] == 0  # on-failure: a clean exit is final
    finally:
        await client.close()
