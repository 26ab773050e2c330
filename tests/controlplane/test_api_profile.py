"""Profile read/update, password change, the @me alias and admin user listing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import (
    PASSWORD,
    bearer,
    create_api_key,
    error_code,
    login_status,
    register,
)

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


async def test_profile_shows_the_callers_own_account(api: Client) -> None:
    account = await register(api)
    response = await api.get("/v1/user/profile", headers=account.headers)
    assert response.status == 200
    profile = await response.json()
    assert profile["id"] == account.id
    assert profile["username"] == account.username
    assert profile["email"] == account.email
    assert profile["is_active"] is True
    assert "password_hash" not in profile
    alias = await api.get("/v1/users/@me", headers=account.headers)
    assert await alias.json() == profile


async def test_profile_update_changes_fields_and_refuses_taken_ones(api: Client) -> None:
    account = await register(api)
    other = await register(api)
    response = await api.put(
        "/v1/user/profile",
        json={"username": "renamed", "email": "New@Example.com", "current_password": PASSWORD},
        headers=account.headers,
    )  # fmt: skip
    assert response.status == 200
    body = await response.json()
    assert (body["username"], body["email"]) == ("renamed", "new@example.com")
    clash = await api.put(
        "/v1/user/profile", json={"username": other.username}, headers=account.headers
    )
    assert clash.status == 409
    assert await error_code(clash) == "account_exists"
    bad = await api.put("/v1/user/profile", json={"username": "a b"}, headers=account.headers)
    assert bad.status == 400


async def test_profile_through_a_cached_api_key_shows_an_update_at_once(api: Client) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    first = await (await api.get("/v1/user/profile", headers=bearer(key))).json()
    again = await (await api.get("/v1/user/profile", headers=bearer(key))).json()  # cached
    assert again == first
    assert set(first) == {
        "id", "username", "email", "is_admin", "is_active", "created_at", "updated_at",
        "last_login",
    }  # fmt: skip
    renamed = await api.put(
        "/v1/user/profile", json={"username": "renamed"}, headers=account.headers
    )
    assert renamed.status == 200
    after = await (await api.get("/v1/user/profile", headers=bearer(key))).json()
    assert after["username"] == "renamed"
    assert after == await renamed.json()


async def test_password_change_needs_the_current_password(api: Client) -> None:
    account = await register(api)
    wrong = await api.put(
        "/v1/user/password",
        json={"current_password": "not-it-at-all", "new_password": "brand-new-pass"},
        headers=account.headers,
    )
    assert wrong.status == 400
    assert await error_code(wrong) == "wrong_password"


async def test_password_change_ends_the_other_sessions(api: Client) -> None:
    account = await register(api)
    other = await (
        await api.post("/v1/auth/login", json={"username": account.username, "password": PASSWORD})
    ).json()
    response = await api.put(
        "/v1/user/password",
        json={
            "current_password": PASSWORD,
            "new_password": "brand-new-pass",
            "confirm_new_password": "brand-new-pass",
        },
        headers=account.headers,
    )
    assert response.status == 200
    assert (await api.get("/v1/user/profile", headers=account.headers)).status == 200
    assert (await api.get("/v1/user/profile", headers=bearer(other["access_token"]))).status == 401
    assert await login_status(api, account.username, PASSWORD) == 401
    assert await login_status(api, account.username, "brand-new-pass") == 200


async def test_admin_lists_users_with_pagination(api: Client) -> None:
    admin = await register(api)
    for _ in range(4):
        await register(api)
    response = await api.get("/v1/users?page=2&limit=2", headers=admin.headers)
    assert response.status == 200
    body = await response.json()
    assert body["pagination"] == {"page": 2, "limit": 2, "total": 5, "total_pages": 3}
    assert len(body["users"]) == 2
    default = await (await api.get("/v1/users", headers=admin.headers)).json()
    assert default["pagination"]["limit"] == 10
    assert default["users"][0]["id"] == admin.id
    one = await api.get(f"/v1/users/{default['users'][1]['id']}", headers=admin.headers)
    assert one.status == 200


async def test_user_listing_is_for_admins_only(api: Client) -> None:
    admin = await register(api)
    user = await register(api)
    response = await api.get("/v1/users", headers=user.headers)
    assert response.status == 403
    assert await error_code(response) == "admin_required"
    assert (await api.get("/v1/users")).status == 401
    other = await api.get(f"/v1/users/{admin.id}", headers=user.headers)
    assert other.status == 403


async def test_pagination_refuses_what_has_no_meaning(api: Client) -> None:
    admin = await register(api)
    for query in ("limit=0", "limit=-3", "page=abc", "limit=ten"):
        response = await api.get(f"/v1/users?{query}", headers=admin.headers)
        assert response.status == 400, query
        assert await error_code(response) == "validation_error"


async def test_pagination_clamps_to_the_seed_maximum_and_first_page(api: Client) -> None:
    """Seed 004 states `limit` max 100: above it, and a page below 1, are clamped, and
    `pagination` shows what was used."""
    admin = await register(api)
    for query, page, limit in (
        ("limit=101", 1, 100),
        ("limit=5000", 1, 100),
        ("page=0&limit=3", 1, 3),
        ("page=-7", 1, 10),
    ):
        response = await api.get(f"/v1/users?{query}", headers=admin.headers)
        assert response.status == 200, query
        pagination = (await response.json())["pagination"]
        assert (pagination["page"], pagination["limit"]) == (page, limit), query
