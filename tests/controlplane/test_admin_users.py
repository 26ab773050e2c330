"""PATCH /v1/users/{id}: an admin makes an account an admin or not, disables or
enables it; nobody else may, and an admin cannot lock themselves out."""

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


async def test_an_admin_makes_another_account_an_admin_and_back(api: Client) -> None:
    admin = await register(api)
    member = await register(api)
    assert admin.is_admin
    assert not member.is_admin
    assert (await api.get("/v1/nodes", headers=member.headers)).status == 403
    promoted = await api.patch(
        f"/v1/users/{member.id}", json={"is_admin": True}, headers=admin.headers
    )
    assert promoted.status == 200
    assert (await promoted.json())["is_admin"] is True
    assert (await api.get("/v1/nodes", headers=member.headers)).status == 200
    demoted = await api.patch(
        f"/v1/users/{member.id}", json={"is_admin": False}, headers=admin.headers
    )
    assert (await demoted.json())["is_admin"] is False
    assert (await api.get("/v1/nodes", headers=member.headers)).status == 403


async def test_disabling_ends_sessions_and_keys_until_enabled(api: Client) -> None:
    admin = await register(api)
    member = await register(api)
    key = await create_api_key(api, member)
    disabled = await api.patch(
        f"/v1/users/{member.id}", json={"is_active": False}, headers=admin.headers
    )
    assert disabled.status == 200
    assert (await disabled.json())["is_active"] is False
    assert (await api.get("/v1/user/profile", headers=member.headers)).status == 401
    assert (await api.get("/v1/user/profile", headers=bearer(key))).status == 401
    assert await login_status(api, member.username, PASSWORD) == 401
    listed = await (await api.get("/v1/users?limit=100", headers=admin.headers)).json()
    assert {u["id"]: u["is_active"] for u in listed["users"]}[member.id] is False

    enabled = await api.patch(
        f"/v1/users/{member.id}", json={"is_active": True}, headers=admin.headers
    )
    assert (await enabled.json())["is_active"] is True
    # The sessions stay ended (the owner signs in again); the key works again.
    assert (await api.get("/v1/user/profile", headers=member.headers)).status == 401
    assert (await api.get("/v1/user/profile", headers=bearer(key))).status == 200
    assert await login_status(api, member.username, PASSWORD) == 200


async def test_only_admins_change_accounts(api: Client) -> None:
    await register(api)
    member = await register(api)
    other = await register(api)
    for target in (other.id, member.id):
        response = await api.patch(
            f"/v1/users/{target}", json={"is_admin": True}, headers=member.headers
        )
        assert response.status == 403
        assert await error_code(response) == "admin_required"
    assert (await api.patch(f"/v1/users/{other.id}", json={"is_active": False})).status == 401


async def test_an_admin_cannot_demote_or_disable_themselves(api: Client) -> None:
    admin = await register(api)
    for change in ({"is_admin": False}, {"is_active": False}):
        response = await api.patch(f"/v1/users/{admin.id}", json=change, headers=admin.headers)
        assert response.status == 409
        assert await error_code(response) == "cannot_change_self"
    kept = await api.patch(f"/v1/users/{admin.id}", json={"is_admin": True}, headers=admin.headers)
    assert kept.status == 200
    assert (await api.get("/v1/nodes", headers=admin.headers)).status == 200


async def test_bad_changes_are_refused_with_the_envelope(api: Client) -> None:
    admin = await register(api)
    member = await register(api)
    unknown = await api.patch(
        "/v1/users/00000000-0000-4000-8000-000000000000",
        json={"is_admin": True},
        headers=admin.headers,
    )
    assert unknown.status == 404
    assert await error_code(unknown) == "user_not_found"
    for body in ({"is_admin": "yes"}, {"username": "x"}, {"is_active": None, "extra": 1}):
        response = await api.patch(f"/v1/users/{member.id}", json=body, headers=admin.headers)
        assert response.status == 400, body
        assert await error_code(response) == "validation_error"
