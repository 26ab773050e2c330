"""Webhooks survive a crash: the receiver is down, the control plane (a real
`encedeus controlplane` process on PostgreSQL) is SIGKILLed and restarted meanwhile,
and when the receiver returns it gets every event, in order, at least once, each
duplicate carrying the same event id."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from controlplane.events.webhooks import EVENT_ID_HEADER
from tests.controlplane.conftest import TEST_JWT_SECRET, TEST_SECRETS_KEY

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

PASSWORD = "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def control_plane(
    config: Path, log: Path, base: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "JWT_SECRET": "durable-webhooks-secret-0123456789"}
    with log.open("a") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controlplane.cli", "controlplane", "--config", str(config),
            stdout=output, stderr=output, env=env,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"{base}/health") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert process.returncode is None, log.read_text()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the control plane did not start: " + log.read_text())
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_every_event_reaches_a_receiver_that_was_down_across_a_sigkill(
    database_url: str, tmp_path: Path
) -> None:
    port, receiver_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "config.hcl"
    config.write_text(
        "controlplane {\n"
        f'  data_dir = "{tmp_path / "data"}"\n'
        '  listen_address = "127.0.0.1"\n'
        f"  port = {port}\n"
        f'  database_url = "{database_url}"\n'
        f'  jwt_secret = "{TEST_JWT_SECRET}"\n'
        f'  secrets_key = "{TEST_SECRETS_KEY}"\n'
        f'  webhook_url = "http://127.0.0.1:{receiver_port}/hook"\n'
        "  webhook_retry_max_delay_seconds = 0.5\n"
        "}\n"
    )
    log = tmp_path / "controlplane.log"
    received: list[tuple[str, dict[str, object]]] = []

    async def send_test_events(http: aiohttp.ClientSession, token: str, count: int) -> None:
        for _ in range(count):
            async with http.get(
                f"{base}/v1/notifications/test", headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 200

    async with aiohttp.ClientSession() as http:
        async with control_plane(config, log, base) as process:
            async with http.post(f"{base}/v1/auth/register", json={
                "username": "ops", "email": "ops@example.com", "password": PASSWORD,
            }) as response:  # fmt: skip
                token = (await response.json())["access_token"]
            await send_test_events(http, token, 5)
            await asyncio.sleep(1.0)  # deliveries written and tried against a closed port
            process.send_signal(signal.SIGKILL)
            await process.wait()
        async with control_plane(config, log, base):
            await send_test_events(http, token, 5)

            async def hook(request: web.Request) -> web.Response:
                received.append((request.headers[EVENT_ID_HEADER], await request.json()))
                return web.Response(status=204)

            app = web.Application()
            app.router.add_post("/hook", hook)
            runner = web.AppRunner(app)
            await runner.setup()
            try:
                await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
                async with asyncio.timeout(20):
                    while len({key for key, _ in received}) < 10:
                        await asyncio.sleep(0.05)
            finally:
                await runner.cleanup()

    first_seen: dict[str, dict[str, object]] = {}
    for key, body in received:
        assert first_seen.setdefault(key, body) == body  # a duplicate is the same event
        assert body["type"] == "test"
        assert str(body["cursor"]) == key
    cursors = [int(key) for key in first_seen]
    assert len(cursors) == 10
    assert cursors == sorted(cursors)  # in order
