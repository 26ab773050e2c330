"""Fixtures for the file API: a real agent (tests/agent/conftest.py) with one server
directory, a sibling server's directory, and a client that signs its own tokens."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.config import NodeIdentity
from agent.daemon import RunningAgent
from agent.files.http_api import FileApi
from common.tokens import Scope, sign_server_token
from tests.agent.conftest import SECRET

READ_WRITE = ["file.read", "file.write"]


@dataclass
class FileAgent:
    """A running agent, the server whose files the tests use, and an HTTP session."""

    base: str
    node_id: str
    server_id: str
    data_dir: Path
    http: aiohttp.ClientSession

    @property
    def server_dir(self) -> Path:
        return self.data_dir / "volumes" / self.server_id

    def url(self, endpoint: str, server_id: str | None = None) -> str:
        return f"{self.base}/api/servers/{server_id or self.server_id}/files/{endpoint}"

    def token(
        self,
        scope: Scope,
        permissions: list[str] | None = None,
        server_id: str | None = None,
        path: str | None = None,
    ) -> str:
        return sign_server_token(
            SECRET,
            node_id=self.node_id,
            user_id="u-test",
            server_id=server_id or self.server_id,
            permissions=READ_WRITE if permissions is None else permissions,
            scope=scope,
            details=None if path is None else {"path": path},
        )

    def auth(
        self, scope: Scope, permissions: list[str] | None = None, path: str | None = None
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scope, permissions, path=path)}"}

    async def op(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST a small write operation; (status, JSON answer)."""
        async with self.http.post(
            self.url(name), json=body, headers=self.auth("file-relay")
        ) as response:
            return response.status, await response.json()

    async def get(self, endpoint: str, **query: str) -> tuple[int, Any]:
        async with self.http.get(
            self.url(endpoint), params=query, headers=self.auth("file-relay")
        ) as response:
            return response.status, await response.json()

    async def put(self, path: str, data: bytes) -> tuple[int, Any]:
        async with self.http.put(
            self.url("upload"),
            params={"path": path},
            data=streamed(data),
            headers=self.auth("file-upload", path=path),
        ) as response:
            return response.status, await response.json()

    async def download(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        async with self.http.get(
            self.url("download"),
            params={"path": path, "token": self.token("file-download", path=path)},
            headers=headers or {},
        ) as response:
            assert response.status in (200, 206), await response.text()
            return await response.read()


async def streamed(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """A body sent in pieces (aiohttp warns about large bytes bodies)."""
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


def agent_state_files(data_dir: Path) -> set[str]:
    """What the agent writes outside servers' directories on its own meanwhile: the
    image collector's state, at start whenever its first pass ends (tests that check
    nothing was written outside a server leave these out)."""
    return {str(data_dir / "image-usage.json"), str(data_dir / "image-usage.tmp")}


def make_server_dir(data_dir: Path, server_id: str) -> Path:
    path = data_dir / "volumes" / server_id
    path.mkdir(parents=True)
    return path


@contextlib.asynccontextmanager
async def file_api_alone(data_dir: Path, **options: Any) -> AsyncIterator[FileAgent]:
    """The agent's file API alone (FileApi with `options`) on a real HTTP port, for
    settings the agent's config does not offer (caps, a disk limit, a pull policy)."""
    identity = NodeIdentity(node_id="node-alone", node_secret=SECRET)
    options.setdefault("owner_of", lambda _server_id: None)
    options.setdefault("disk_limit_of", lambda _server_id: 0)
    api = FileApi(identity, data_dir, time.time() - 1, **options)
    app = web.Application()
    api.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server_id = str(uuid.uuid4())
    make_server_dir(data_dir, server_id)
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            yield FileAgent(base, "node-alone", server_id, data_dir, http)
    finally:
        await runner.cleanup()


@pytest.fixture
async def file_agent(agent: RunningAgent) -> AsyncIterator[FileAgent]:
    server_id = str(uuid.uuid4())
    data_dir = Path(agent.config.data_dir)
    make_server_dir(data_dir, server_id)
    async with aiohttp.ClientSession() as http:
        yield FileAgent(
            base=f"http://127.0.0.1:{agent.http.port}",
            node_id=agent.identity.node_id,
            server_id=server_id,
            data_dir=data_dir,
            http=http,
        )
