"""Cookie mode for the web UI's refresh token (controlplane/api/refresh_cookie.py):
asked for with `X-Refresh-Cookie: 1`, the refresh token travels only in an HttpOnly,
SameSite=Strict cookie scoped to /v1/auth/refresh; other clients see the JSON API as
before."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import PASSWORD, bearer, error_code, register

Client = TestClient[Any, Any]
COOKIE_MODE = {"X-Refresh-Cookie": "1"}
pytestmark = pytest.mark.usefixtures("blocking_guard")


def refresh_cookie(response: Any) -> Any:
    """The `encedeus_refresh` morsel of the response's Set-Cookie headers."""
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return jar.get("encedeus_refresh")


async def test_cookie_mode_keeps_the_refresh_token_out_of_javascript(api: Client) -> None:
    account = await register(api)
    login = await api.post(
        "/v1/auth/login",
        json={"username": account.username, "password": PASSWORD},
        headers=COOKIE_MODE,
    )
    assert login.status == 200
    body = await login.json()
    assert body["refresh_token"] == ""
    assert body["access_token"]
    cookie = refresh_cookie(login)
    assert cookie is not None
    assert cookie.value
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/v1/auth/refresh"

    api.session.cookie_jar.clear()
    sent = {"encedeus_refresh": cookie.value}
    refreshed = await api.post("/v1/auth/refresh", headers=COOKIE_MODE, cookies=sent)
    assert refreshed.status == 200, await refreshed.text()
    assert (await refreshed.json())["refresh_token"] == ""
    rotated = refresh_cookie(refreshed)
    assert rotated is not None
    assert rotated.value not in ("", cookie.value)

    # Without the header the cookie is not read (a cross-site form cannot add it).
    api.session.cookie_jar.clear()
    plain = await api.post("/v1/auth/refresh", cookies={"encedeus_refresh": rotated.value})
    assert plain.status == 401
    assert await error_code(plain) == "invalid_refresh_token"

    access = (await refreshed.json())["access_token"]
    logout = await api.post("/v1/auth/logout", headers={**bearer(access), **COOKIE_MODE})
    assert logout.status == 200
    cleared = refresh_cookie(logout)
    assert cleared is not None
    assert cleared.value == ""
    assert cleared["path"] == "/v1/auth/refresh"
    api.session.cookie_jar.clear()
    ended = await api.post(
        "/v1/auth/refresh", headers=COOKIE_MODE, cookies={"encedeus_refresh": rotated.value}
    )
    assert ended.status == 401
    assert refresh_cookie(ended).value == ""


async def test_other_clients_get_the_json_api_unchanged(api: Client) -> None:
    account = await register(api)
    login = await api.post(
        "/v1/auth/login", json={"username": account.username, "password": PASSWORD}
    )
    body = await login.json()
    assert body["refresh_token"]
    assert "Set-Cookie" not in login.headers
    refreshed = await api.post("/v1/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status == 200
    assert (await refreshed.json())["refresh_token"]
    assert "Set-Cookie" not in refreshed.headers
