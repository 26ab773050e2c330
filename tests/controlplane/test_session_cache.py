"""The session check of access tokens: one database read per token while the check is
cached, none past the token's end, and no cached check outliving a revocation that
raced with it. (Logout, refresh-token reuse and password changes ending cached checks
at once: test_api_auth.py and test_account_changes.py; on another control plane:
tests/e2e/test_high_availability.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from controlplane.api import authentication
from controlplane.api.authentication import Authenticator
from controlplane.state import AUTHENTICATOR
from tests.controlplane.accounts_support import register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.sql_support import reads_of

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def test_an_access_token_checks_its_session_once_while_cached(api: Client) -> None:
    account = await register(api)
    with reads_of(api, "auth_sessions") as reads:
        for _ in range(5):
            assert (await api.get("/v1/user/profile", headers=account.headers)).status == 200
    assert len(reads) == 1


async def test_without_the_cache_every_request_checks_its_session(
    make_config: ConfigFactory,
) -> None:
    api = await start_client(make_config(session_cache_seconds=0.0))
    try:
        account = await register(api)
        with reads_of(api, "auth_sessions") as reads:
            for _ in range(3):
                assert (await api.get("/v1/user/profile", headers=account.headers)).status == 200
        assert len(reads) == 3
    finally:
        await api.close()


async def test_a_cached_check_ends_with_its_token(
    api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await register(api)
    authenticator: Authenticator = api.app[AUTHENTICATOR]
    await authenticator.authenticate(account.access_token)
    assert authenticator.cached_caller(account.access_token) is not None
    expiry = float(_claims(account.access_token)["exp"])
    with monkeypatch.context() as patched:
        patched.setattr(time, "time", lambda: expiry)
        assert authenticator.cached_caller(account.access_token) is None


async def test_a_revocation_during_the_check_keeps_it_out_of_the_cache(api: Client) -> None:
    account = await register(api)
    authenticator: Authenticator = api.app[AUTHENTICATOR]
    checking = asyncio.ensure_future(authenticator.authenticate(account.access_token))
    await asyncio.sleep(0)  # its read is under way
    authenticator.forget_session(uuid.UUID(_claims(account.access_token)["sid"]))
    await checking
    assert authenticator.cached_caller(account.access_token) is None


async def test_a_full_cache_sweeps_its_stale_entries_first(
    api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(authentication, "MAX_CACHED", 3)
    accounts = [await register(api) for _ in range(4)]
    authenticator: Authenticator = api.app[AUTHENTICATOR]
    for account in accounts[:3]:
        await authenticator.authenticate(account.access_token)
    sessions = authenticator._sessions
    first = sessions[accounts[0].access_token]
    stale_since = time.monotonic() - 3600
    sessions[accounts[0].access_token] = type(first)(first.user, first.ends_at, stale_since)
    await authenticator.authenticate(accounts[3].access_token)
    assert set(sessions) == {account.access_token for account in accounts[1:]}
