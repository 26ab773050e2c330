"""Helpers for tests that need signed-in accounts on a test control plane."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

_counter = itertools.count(1)
PASSWORD = "correct-horse-9"


@dataclass
class Account:
    """A registered account and its current tokens."""

    id: str
    username: str
    email: str
    password: str
    access_token: str
    refresh_token: str
    is_admin: bool

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header with the access token."""
        return bearer(self.access_token)


def bearer(token: str) -> dict[str, str]:
    """An Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


async def register(
    client: TestClient[Any, Any], username: str | None = None, password: str = PASSWORD
) -> Account:
    """Register a new account (unique name unless given) and return it signed in."""
    name = username or f"user{next(_counter)}"
    email = f"{name}@example.com"
    response = await client.post(
        "/v1/auth/register", json={"username": name, "email": email, "password": password}
    )
    body = await response.json()
    assert response.status == 201, body
    return Account(
        id=body["user"]["id"],
        username=name,
        email=email,
        password=password,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        is_admin=body["user"]["is_admin"],
    )


async def login_status(client: TestClient[Any, Any], username: str, password: str) -> int:
    """The HTTP status of a login attempt as `username` with `password`."""
    response = await client.post(
        "/v1/auth/login", json={"username": username, "password": password}
    )
    return response.status


async def create_api_key(client: TestClient[Any, Any], account: Account, name: str = "k") -> str:
    """A new API key secret for `account`."""
    response = await client.post("/v1/api-keys", json={"name": name}, headers=account.headers)
    body = await response.json()
    assert response.status == 201, body
    key: str = body["key"]
    return key


async def error_code(response: Any) -> str:
    """The `error.code` of an error response (asserting the envelope's shape)."""
    body = await response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    code: str = body["error"]["code"]
    return code


async def expect_json(response: Any, status: int = 200) -> Any:
    """The decoded body, after asserting the status (the body is the failure message)."""
    body = await response.json()
    assert response.status == status, body
    return body
