"""An aiohttp app that implements exactly the documented /v1/remote/sftp/auth contract.

Real HTTP on 127.0.0.1:0, so the agent's HttpControlPlane is exercised for real; the
lead's end-to-end test swaps in the real control plane.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.local_http import serve_app

NODE_SECRET = "node-secret-for-tests"


@dataclass
class Account:
    user_id: str
    password: str
    keys: list[str] = field(default_factory=list)
    admin: bool = False


@dataclass
class Server:
    owner: str
    read_only_users: set[str] = field(default_factory=set)
    disk_limit_bytes: int = 0
    volume_id: str = ""  # the slot's volume; "" answers none (an older control plane)


@dataclass
class FakeControlPlane:
    accounts: dict[str, Account] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    down: bool = False

    def decide(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        username = body.get("username")
        if not isinstance(username, str) or "." not in username:
            return 401, _error("bad_username", "username must be <account>.<server>")
        name, _, short = username.rpartition(".")
        matches = [sid for sid, s in self.servers.items() if (s.volume_id or sid).startswith(short)]
        if len(matches) != 1:
            return 404, _error("server_not_found", "no such server on this node")
        server_id = matches[0]
        account = self.accounts.get(name)
        if account is None or not self._credential_ok(account, body):
            return 401, _error("invalid_credentials", "wrong username or credentials")
        server = self.servers[server_id]
        read_only = name in server.read_only_users
        if not (account.admin or server.owner == name or read_only):
            return 404, _error("server_not_found", "no such server on this node")
        permissions = ["file.read"] if read_only else ["file.read", "file.write"]
        answer: dict[str, Any] = {
            "server_id": server_id,
            "user_id": account.user_id,
            "permissions": permissions,
            "read_only": read_only,
            "disk_limit_bytes": server.disk_limit_bytes,
        }
        if server.volume_id:
            answer["volume_id"] = server.volume_id
        return 200, answer

    @staticmethod
    def _credential_ok(account: Account, body: dict[str, Any]) -> bool:
        if "password" in body:
            return bool(body["password"] == account.password)
        key = body.get("public_key")
        return isinstance(key, str) and " ".join(key.split()[:2]) in account.keys

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {NODE_SECRET}":
            return web.json_response(_error("invalid_node_secret", "bad secret"), status=401)
        if self.down:
            return web.json_response(_error("unavailable", "down"), status=503)
        body = await request.json()
        self.requests.append(body)
        status, answer = self.decide(body)
        return web.json_response(answer, status=status)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": None}}


@asynccontextmanager
async def serve(fake: FakeControlPlane) -> AsyncIterator[FakeControlPlane]:
    app = web.Application()
    app.router.add_post("/v1/remote/sftp/auth", fake.handle)
    async with serve_app(app) as url:
        fake.url = url
        yield fake
