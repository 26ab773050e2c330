"""Type=notify: READY=1 once the control plane serves, STOPPING=1 when it stops."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from tests.controlplane.conftest import ConfigFactory, start_client


async def _receive(sock: socket.socket) -> str:
    data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), 10)
    return data.decode()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_ready_and_stopping_reach_the_notify_socket(
    make_config: ConfigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        client = await start_client(make_config())
        try:
            assert await _receive(sock) == "READY=1"
            assert (await client.get("/health")).status == 200
        finally:
            await client.close()
        assert await _receive(sock) == "STOPPING=1"
