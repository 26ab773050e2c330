"""API keys: shown once, stored hashed, usable as Bearer, revocable at once, private."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlmodel import select

from controlplane.db.tables import ApiKey
from controlplane.security.credentials import looks_like_api_key
from controlplane.state import DATABASE
from tests.controlplane.accounts_support import bearer, create_api_key, error_code, register

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


async def test_created_key_is_shown_once_and_stored_only_as_a_hash(api: Client) -> None:
    account = await register(api)
    response = await api.post(
        "/v1/api-keys", json={"name": "ci", "description": "deploys"}, headers=account.headers
    )
    assert response.status == 201
    created = await response.json()
    key = created["key"]
    assert key.startswith("enc_")
    assert looks_like_api_key(key)
    assert key.startswith(created["key_prefix"])
    listing = await (await api.get("/v1/api-keys", headers=account.headers)).json()
    assert [item["id"] for item in listing["api_keys"]] == [created["id"]]
    assert "key" not in listing["api_keys"][0]
    assert key not in str(listing)
    async with api.app[DATABASE].session() as session:
        stored = (await session.exec(select(ApiKey))).one()
    assert stored.key_hash != key
    assert key not in stored.model_dump_json()


async def test_api_key_authenticates_and_records_last_used(api: Client) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    response = await api.get("/v1/user/profile", headers=bearer(key))
    assert response.status == 200
    assert (await response.json())["id"] == account.id
    listing = await (await api.get("/v1/api-keys", headers=bearer(key))).json()
    assert listing["api_keys"][0]["last_used"] is not None


async def test_revoked_key_stops_working_on_the_next_request(api: Client) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    assert (await api.get("/v1/user/profile", headers=bearer(key))).status == 200  # cached now
    key_id = (await (await api.get("/v1/api-keys", headers=account.headers)).json())["api_keys"][0][
        "id"
    ]
    revoke = await api.delete(f"/v1/api-keys/{key_id}", headers=account.headers)
    assert revoke.status == 200
    after = await api.get("/v1/user/profile", headers=bearer(key))
    assert after.status == 401
    assert await error_code(after) == "invalid_api_key"
    again = await api.delete(f"/v1/api-keys/{key_id}", headers=account.headers)
    assert again.status == 404


async def test_keys_with_a_bad_checksum_are_refused(api: Client) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    broken = key[:-1] + ("A" if key[-1] != "A" else "B")
    response = await api.get("/v1/user/profile", headers=bearer(broken))
    assert response.status == 401


async def test_one_account_never_sees_or_revokes_anothers_keys(api: Client) -> None:
    alice = await register(api)
    mallory = await register(api)
    alice_key = await create_api_key(api, alice)
    listing = await (await api.get("/v1/api-keys", headers=alice.headers)).json()
    alice_key_id = listing["api_keys"][0]["id"]
    theirs = await (await api.get("/v1/api-keys", headers=mallory.headers)).json()
    assert theirs["api_keys"] == []
    assert theirs["pagination"]["total"] == 0
    attempt = await api.delete(f"/v1/api-keys/{alice_key_id}", headers=mallory.headers)
    assert attempt.status == 404
    assert (await api.get("/v1/user/profile", headers=bearer(alice_key))).status == 200
    profile = await (await api.get("/v1/user/profile", headers=bearer(alice_key))).json()
    assert profile["id"] == alice.id


async def test_key_list_is_paginated(api: Client) -> None:
    account = await register(api)
    for number in range(3):
        await create_api_key(api, account, name=f"k{number}")
    body = await (await api.get("/v1/api-keys?limit=2&page=2", headers=account.headers)).json()
    assert body["pagination"] == {"page": 2, "limit": 2, "total": 3, "total_pages": 2}
    assert len(body["api_keys"]) == 1


async def test_garbage_key_ids_are_404(api: Client) -> None:
    account = await register(api)
    response = await api.delete("/v1/api-keys/not-a-uuid", headers=account.headers)
    assert response.status == 404


async def test_expired_keys_are_refused(api: Client) -> None:
    account = await register(api)
    created = await (
        await api.post(
            "/v1/api-keys", json={"name": "short", "expires_in_days": 1}, headers=account.headers
        )
    ).json()
    assert created["expires_at"] is not None
    async with api.app[DATABASE].transaction() as session:
        key = await session.get(ApiKey, uuid.UUID(created["id"]))
        assert key is not None
        key.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(key)
    response = await api.get("/v1/user/profile", headers=bearer(created["key"]))
    assert response.status == 401
    assert await error_code(response) == "invalid_api_key"
