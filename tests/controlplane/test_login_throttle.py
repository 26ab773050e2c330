"""Password attempts are reserved BEFORE verification (issue 9, finding 4), for HTTP
login and the SFTP credential check alike: 20 parallel wrong passwords get at most the
free failures verified; key logins are unaffected; an attacker cannot lock the owner
out from another address. Verifications are counted by wrapping the real argon2
`verify_password` where each path calls it. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
import pytest
from aiohttp.test_utils import TestClient

from common.login_throttle import PAIR_CURVE
from controlplane.security import passwords
from controlplane.state import LOGIN_THROTTLE
from tests.controlplane.accounts_support import Account, bearer, error_code, expect_json, register
from tests.controlplane.cluster_support import create_node
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.test_nodes import _enroll, _replica_on

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


def count_verifications(monkeypatch: pytest.MonkeyPatch, module: str) -> list[str]:
    """Wrap `verify_password` as `module` calls it; the list grows by one per call."""
    calls: list[str] = []

    async def counting(password_hash: str | None, password: str) -> bool:
        calls.append(password)
        return await passwords.verify_password(password_hash, password)

    monkeypatch.setattr(f"{module}.verify_password", counting)
    return calls


async def in_parallel(api: Client, count: int, attempt: Callable[[], Awaitable[Any]]) -> list[int]:
    """`count` attempts at once. The throttle's clock stands still meanwhile: on a loaded
    machine the burst could outlast the first delay (1 s), and an attempt past it is
    rightly verified (a CI run counted 6 verifications instead of 5)."""
    throttle = api.app[LOGIN_THROTTLE]
    clock, now = throttle._clock, throttle._clock()
    throttle._clock = lambda: now
    try:
        answers = await asyncio.gather(*(attempt() for _ in range(count)))
    finally:
        throttle._clock = clock
    return sorted(answer.status for answer in answers)


async def test_parallel_wrong_http_logins_are_verified_at_most_the_limit(
    api: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await register(api)
    verified = count_verifications(monkeypatch, "controlplane.accounts")

    def guess() -> Awaitable[Any]:
        body = {"username": owner.username, "password": "wrong-password"}
        return api.post("/v1/auth/login", json=body)

    statuses = await in_parallel(api, 20, guess)
    assert len(verified) == PAIR_CURVE.free == 5
    assert statuses == [401] * 5 + [429] * 15
    # A delay, not a lock-out: one second after the last guess the owner is in.
    await asyncio.sleep(1.0)
    answer = await api.post(
        "/v1/auth/login", json={"username": owner.username, "password": owner.password}
    )
    assert answer.status == 200, await answer.text()


async def test_an_attacker_cannot_lock_the_owner_out_of_http_login(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await start_client(make_config(trusted_proxies=["127.0.0.1/32"]))
    try:
        owner = await register(api)
        verified = count_verifications(monkeypatch, "controlplane.accounts")

        def guess_from(address: str) -> Callable[[], Awaitable[Any]]:
            body = {"email": owner.email, "password": "wrong-password"}
            headers = {"X-Forwarded-For": address}
            return lambda: api.post("/v1/auth/login", json=body, headers=headers)

        # 6 addresses guessing 5 at a time: past 20 failures the account is under
        # attack, and an address that has failed already gets no second guess soon.
        for bot in range(6):
            await in_parallel(api, 5, guess_from(f"198.51.100.{bot}"))
        assert len(verified) == 4 * 5 + 2
        answer = await api.post(
            "/v1/auth/login",
            json={"email": owner.email, "password": owner.password},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert answer.status == 200, await answer.text()
    finally:
        await api.close()


async def _sftp_node(api: Client, database_url: str) -> tuple[Account, dict[str, str], str]:
    admin = await register(api)
    owner = await register(api)
    enrolled = await expect_json(await _enroll(api, await create_node(api, admin, "n1")))
    server_id = await _replica_on(database_url, owner, enrolled["node_id"])
    return owner, bearer(enrolled["node_secret"]), f"{owner.username}.{server_id[:8]}"


async def test_parallel_wrong_sftp_passwords_are_verified_at_most_the_limit(
    api: Client, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, node, username = await _sftp_node(api, database_url)
    verified = count_verifications(monkeypatch, "controlplane.api.remote")

    def sftp_login(address: str, **credential: str) -> Callable[[], Awaitable[Any]]:
        body = {"username": username, "client_address": address, **credential}
        return lambda: api.post("/v1/remote/sftp/auth", json=body, headers=node)

    statuses = await in_parallel(api, 20, sftp_login("198.51.100.7", password="wrong-password"))
    assert len(verified) == 5
    assert statuses == [401] * 5 + [429] * 15
    limited = await sftp_login("198.51.100.7", password="wrong-password")()
    if limited.status == 429:  # unless the first delay (1 s) has passed already
        assert await error_code(limited) == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1

    # A key login from the same address is not held back by the password failures.
    key = await asyncio.to_thread(asyncssh.generate_private_key, "ssh-ed25519")
    public = key.export_public_key("openssh").decode()
    added = await api.post(
        "/v1/user/ssh-keys", json={"name": "k", "public_key": public}, headers=owner.headers
    )
    assert added.status == 201
    assert (await sftp_login("198.51.100.7", public_key=public)()).status == 200

    # Neither is the owner's password from another address.
    assert (await sftp_login("203.0.113.9", password=owner.password)()).status == 200


async def test_http_and_sftp_share_the_account_budget(
    api: Client, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, node, username = await _sftp_node(api, database_url)
    body = {"username": username, "client_address": "127.0.0.1", "password": "wrong-password"}
    for _ in range(PAIR_CURVE.free):
        answer = await api.post("/v1/remote/sftp/auth", json=body, headers=node)
        assert answer.status == 401
    login = await api.post(
        "/v1/auth/login", json={"username": owner.username, "password": "wrong-password"}
    )
    assert login.status == 429  # the same (account, address) pair
