"""The forge's budget is not one tenant's to spend: a per-account interval between
checks, token-less answers shared across accounts for a short time (and served while
the token-less rate limit is spent), conditional requests (ETag -> 304)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.repos.forge import ForgeClient, ForgeRateLimited
from tests.controlplane.accounts_support import error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.forge_support import FakeForgeState, fake_forge

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


@pytest.fixture
async def forge() -> AsyncIterator[FakeForgeState]:
    async with fake_forge() as state:
        state.publish("acme/tool", "v1.0.0", {"tool.sh": b"echo one\n"})
        state.publish("acme/other", "v2", {"a": b"a"})
        yield state


async def test_an_account_checks_its_repos_at_most_once_per_interval(
    make_config: ConfigFactory, forge: FakeForgeState
) -> None:
    config = make_config(forge_api_url=forge.base_url, repo_check_interval_seconds=60)
    client = await start_client(config)
    try:
        first, second = await register(client), await register(client)
        for user in (first, second):
            body = {"owner_name": "acme", "name": "tool"}
            assert (await client.post("/v1/repos", json=body, headers=user.headers)).status == 201
        assert (await client.patch("/v1/repos", headers=first.headers)).status == 200
        calls = len(forge.api_calls())
        again = await client.patch("/v1/repos", headers=first.headers)
        assert again.status == 429
        assert await error_code(again) == "rate_limited"
        assert 55 <= int(again.headers["Retry-After"]) <= 60
        assert len(forge.api_calls()) == calls  # the forge was not asked
        # Another account has its own interval.
        assert (await client.patch("/v1/repos", headers=second.headers)).status == 200
    finally:
        await client.close()


async def test_token_less_answers_are_shared_and_served_while_the_limit_is_spent(
    forge: FakeForgeState,
) -> None:
    client = ForgeClient(forge.base_url, 5, anonymous_ttl_seconds=60)
    first = await client.latest_release("acme", "tool")  # one account's check
    calls = len(forge.api_calls())
    forge.rate_limited = True
    with pytest.raises(ForgeRateLimited):  # another account spends the anonymous budget
        await client.latest_release("acme", "other")
    with pytest.raises(ForgeRateLimited):  # blocked without asking again
        await client.latest_release("acme", "other")
    assert len(forge.api_calls()) == calls + 1
    # A third account's lookup of a release in the cache is answered, not blocked.
    assert await client.latest_release("acme", "tool") == first
    assert len(forge.api_calls()) == calls + 1


async def test_expired_token_less_answers_are_revalidated(forge: FakeForgeState) -> None:
    client = ForgeClient(forge.base_url, 5, anonymous_ttl_seconds=0)
    first = await client.latest_release("acme", "tool")
    again = await client.latest_release("acme", "tool")
    assert first == again
    asked = forge.api_calls()[-1]
    assert asked.if_none_match
    assert asked.status == 304


async def test_answers_for_a_token_are_revalidated_with_their_etag(forge: FakeForgeState) -> None:
    client = ForgeClient(forge.base_url, 5)
    first = await client.latest_release("acme", "tool", "ghp_one")
    assert first is not None
    cached = await client.latest_release("acme", "tool", "ghp_one")
    assert cached == first
    asked = forge.api_calls()[-1]
    assert (asked.if_none_match != "", asked.status) == (True, 304)
    # Another credential never gets this credential's answer without asking.
    await client.latest_release("acme", "tool", "ghp_two")
    assert forge.api_calls()[-1].if_none_match == ""
    assert forge.api_calls()[-1].status == 200
    forge.publish("acme/tool", "v1.1.0", {"tool.sh": b"echo two\n"})
    newer = await client.latest_release("acme", "tool", "ghp_one")
    assert newer is not None
    assert newer.tag == "v1.1.0"
    assert forge.api_calls()[-1].status == 200
