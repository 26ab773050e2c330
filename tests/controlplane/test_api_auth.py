"""Register, login, refresh (rotation and reuse), logout, closed registration."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import (
    PASSWORD,
    bearer,
    create_api_key,
    error_code,
    register,
)
from tests.controlplane.conftest import ConfigFactory, start_client

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


async def test_first_account_is_admin_and_later_ones_are_not(api: Client) -> None:
    first = await register(api)
    second = await register(api)
    assert first.is_admin
    assert not second.is_admin


async def test_register_enforces_the_account_rules(api: Client) -> None:
    bad = [
        {"username": "has space", "email": "a@example.com", "password": PASSWORD},
        {"username": "okname", "email": "a@example.com", "password": "short7!"},
        {"username": "okname", "email": "a@example.com", "password": "has space in it"},
        {"username": "okname", "email": "not-an-email", "password": PASSWORD},
        {"username": "okname", "email": "a@example.com"},
        {"username": "@me", "email": "a@example.com", "password": PASSWORD},
    ]
    for body in bad:
        response = await api.post("/v1/auth/register", json=body)
        assert response.status == 400, body
        assert await error_code(response) == "validation_error"


async def test_register_refuses_taken_names_with_409(api: Client) -> None:
    account = await register(api, "taken")
    same_name = {"username": "taken", "email": "other@example.com", "password": PASSWORD}
    response = await api.post("/v1/auth/register", json=same_name)
    assert response.status == 409
    assert await error_code(response) == "username_taken"
    same_mail = {"username": "other", "email": account.email.upper(), "password": PASSWORD}
    response = await api.post("/v1/auth/register", json=same_mail)
    assert response.status == 409
    assert await error_code(response) == "email_taken"


async def test_login_by_email_or_username(api: Client) -> None:
    account = await register(api)
    for login in ({"email": account.email.upper()}, {"username": account.username}):
        response = await api.post("/v1/auth/login", json={**login, "password": PASSWORD})
        assert response.status == 200
        body = await response.json()
        assert body["user"]["id"] == account.id
        profile = await api.get("/v1/user/profile", headers=bearer(body["access_token"]))
        assert (await profile.json())["last_login"] is not None


async def test_login_failures_do_not_say_which_part_was_wrong(api: Client) -> None:
    account = await register(api)
    wrong_password = await api.post(
        "/v1/auth/login", json={"username": account.username, "password": "wrong-password"}
    )
    no_user = await api.post("/v1/auth/login", json={"username": "ghost", "password": PASSWORD})
    assert wrong_password.status == no_user.status == 401
    assert await error_code(wrong_password) == await error_code(no_user) == "invalid_credentials"


async def test_refresh_by_body_or_bearer_rotates_tokens(api: Client) -> None:
    account = await register(api)
    response = await api.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert response.status == 200
    first = await response.json()
    assert first["refresh_token"] != account.refresh_token
    response = await api.post("/v1/auth/refresh", headers=bearer(first["refresh_token"]))
    assert response.status == 200
    second = await response.json()
    profile = await api.get("/v1/user/profile", headers=bearer(second["access_token"]))
    assert profile.status == 200


async def test_reusing_a_spent_refresh_token_revokes_the_session(api: Client) -> None:
    account = await register(api)
    rotated = await (
        await api.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    ).json()
    for token in (account.access_token, rotated["access_token"]):  # their checks cached
        assert (await api.get("/v1/user/profile", headers=bearer(token))).status == 200
    reuse = await api.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert reuse.status == 401
    assert await error_code(reuse) == "refresh_token_reused"
    # The whole family is gone: the newest refresh token and the access tokens too.
    latest = await api.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert latest.status == 401
    for token in (account.access_token, rotated["access_token"]):
        assert (await api.get("/v1/user/profile", headers=bearer(token))).status == 401


async def test_refresh_rejects_garbage_and_missing_tokens(api: Client) -> None:
    garbage = await api.post("/v1/auth/refresh", json={"refresh_token": "nope"})
    assert garbage.status == 401
    missing = await api.post("/v1/auth/refresh")
    assert missing.status == 401
    assert await error_code(missing) == "invalid_refresh_token"


async def test_logout_ends_the_session_only(api: Client) -> None:
    account = await register(api)
    other = await (
        await api.post("/v1/auth/login", json={"username": account.username, "password": PASSWORD})
    ).json()
    response = await api.post("/v1/auth/logout", headers=account.headers)
    assert response.status == 200
    assert (await api.get("/v1/user/profile", headers=account.headers)).status == 401
    refresh = await api.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status == 401
    still = await api.get("/v1/user/profile", headers=bearer(other["access_token"]))
    assert still.status == 200


async def test_tampered_and_foreign_tokens_are_refused(api: Client) -> None:
    account = await register(api)
    header, payload, signature = account.access_token.split(".")
    # Change the first character: it carries six whole bits of the MAC, whereas the
    # last ones may already be the replacement (or carry only padding bits).
    flipped = "B" if signature[0] == "A" else "A"
    tampered = f"{header}.{payload}.{flipped}{signature[1:]}"
    for token in (tampered, "enc_notakey", "a.b.c", account.refresh_token):
        response = await api.get("/v1/user/profile", headers=bearer(token))
        assert response.status == 401, token
        assert response.headers["WWW-Authenticate"] == "Bearer"
    response = await api.get("/v1/user/profile")
    assert response.status == 401
    assert await error_code(response) == "unauthorized"


async def test_closed_registration_refuses_new_accounts(make_config: ConfigFactory) -> None:
    client = await start_client(make_config(registration="closed"))
    try:
        body = {"username": "someone", "email": "someone@example.com", "password": PASSWORD}
        response = await client.post("/v1/auth/register", json=body)
        assert response.status == 403
        assert await error_code(response) == "registration_closed"
    finally:
        await client.close()


async def test_racing_first_registrations_make_exactly_one_admin(api: Client) -> None:
    accounts = await asyncio.gather(*(register(api) for _ in range(5)))
    assert sum(account.is_admin for account in accounts) == 1


async def test_seed_003_access_token_header_authenticates(api: Client) -> None:
    """Seed 003 sends the raw token in an `access_token` header instead of
    `Authorization: Bearer`; it is accepted for access tokens and API keys alike."""
    account = await register(api)
    key = await create_api_key(api, account)
    for token in (account.access_token, key):
        response = await api.get("/v1/user/profile", headers={"access_token": token})
        assert response.status == 200, await response.text()
        assert (await response.json())["id"] == account.id
    bad = await api.get("/v1/user/profile", headers={"access_token": "not-a-token"})
    assert bad.status == 401
    assert await error_code(bad) == "invalid_token"
    # The seed's header wins: its Authorization header carries a forge token.
    both = {"access_token": "not-a-token", **bearer(account.access_token)}
    assert (await api.get("/v1/user/profile", headers=both)).status == 401
