"""The API-key cache: one shared load per key, and no load joined across a revocation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.api.authentication import Authenticator
from controlplane.state import AUTHENTICATOR
from tests.controlplane.accounts_support import bearer, create_api_key, error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.sql_support import reads_of

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


async def test_concurrent_requests_on_an_uncached_key_share_one_load(api: Client) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    authenticator: Authenticator = api.app[AUTHENTICATOR]
    with reads_of(api, "api_keys") as loads:
        callers = await asyncio.gather(*(authenticator.authenticate(key) for _ in range(20)))
    assert len(loads) == 1
    assert {str(caller.id) for caller in callers} == {account.id}


async def test_an_expired_cache_entry_is_reloaded_once(make_config: ConfigFactory) -> None:
    api = await start_client(make_config(api_key_cache_seconds=0.0))  # always stale
    try:
        account = await register(api)
        key = await create_api_key(api, account)
        authenticator: Authenticator = api.app[AUTHENTICATOR]
        await authenticator.authenticate(key)
        assert authenticator.cached_caller(key) is None  # stale at once
        with reads_of(api, "api_keys") as loads:
            await asyncio.gather(*(authenticator.authenticate(key) for _ in range(20)))
        assert len(loads) == 1
        # Over HTTP too: every answer is right, whichever load it shared.
        answers = await asyncio.gather(
            *(api.get("/v1/user/profile", headers=bearer(key)) for _ in range(10))
        )
        assert {answer.status for answer in answers} == {200}
    finally:
        await api.close()


async def test_a_request_after_a_revocation_does_not_join_the_load_before_it(
    api: Client,
) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    authenticator: Authenticator = api.app[AUTHENTICATOR]
    with reads_of(api, "api_keys") as loads:
        before = asyncio.ensure_future(authenticator.authenticate(key))
        await asyncio.sleep(0)  # its load is under way
        authenticator.forget_user(uuid.UUID(account.id))
        after = asyncio.ensure_future(authenticator.authenticate(key))
        await asyncio.gather(before, after)
    assert len(loads) == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_load(api: Client) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    authenticator: Authenticator = api.app[AUTHENTICATOR]
    with reads_of(api, "api_keys") as loads:
        leaver = asyncio.ensure_future(authenticator.authenticate(key))
        stayer = asyncio.ensure_future(authenticator.authenticate(key))
        await asyncio.sleep(0)
        leaver.cancel()
        caller = await stayer
    assert leaver.cancelled()
    assert str(caller.id) == account.id
    assert len(loads) == 1


async def test_an_invalid_key_fails_every_caller_of_the_shared_load(api: Client) -> None:
    account = await register(api)
    key = await create_api_key(api, account)
    listing = await (await api.get("/v1/api-keys", headers=account.headers)).json()
    await api.delete(f"/v1/api-keys/{listing['api_keys'][0]['id']}", headers=account.headers)
    answers = await asyncio.gather(
        *(api.get("/v1/user/profile", headers=bearer(key)) for _ in range(5))
    )
    assert {answer.status for answer in answers} == {401}
    assert {await error_code(answer) for answer in answers} == {"invalid_api_key"}
