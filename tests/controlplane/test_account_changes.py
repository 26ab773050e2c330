"""Account changes that must not keep a stolen credential alive: an e-mail change needs
the password, password change and reset revoke sessions and API keys (at once, past
the API-key cache), and the owner is mailed each time — through a real SMTP server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.message import Message
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import (
    PASSWORD,
    Account,
    bearer,
    create_api_key,
    error_code,
    expect_json,
    register,
)
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.smtp_support import Inbox

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")
NEW_PASSWORD = "brand-new-pass"


@pytest.fixture
async def client(make_config: ConfigFactory, smtp: tuple[Inbox, int]) -> AsyncIterator[Client]:
    _, port = smtp
    # Long credential caches: revocation must not wait for them.
    config = make_config(
        smtp_host="127.0.0.1", smtp_port=port, email_from="cp@example.com",
        api_key_cache_seconds=3600, session_cache_seconds=3600,
    )  # fmt: skip
    client = await start_client(config)
    try:
        yield client
    finally:
        await client.close()


def _body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


async def _login(api: Client, account: Account) -> dict[str, str]:
    body = {"username": account.username, "password": account.password}
    grant = await expect_json(await api.post("/v1/auth/login", json=body))
    return bearer(grant["access_token"])


async def _status(api: Client, headers: dict[str, str]) -> int:
    return (await api.get("/v1/user/profile", headers=headers)).status


@pytest.mark.parametrize("path", ["/v1/user/profile", "/v1/users/@me"])
@pytest.mark.parametrize("credential", ["access_token", "api_key"])
async def test_a_stolen_credential_cannot_change_the_email_without_the_password(
    client: Client, smtp: tuple[Inbox, int], path: str, credential: str
) -> None:
    inbox, _ = smtp
    owner = await register(client)
    headers = owner.headers
    if credential == "api_key":
        headers = bearer(await create_api_key(client, owner))
    thief = {"email": "thief@example.com"}
    missing = await client.put(path, json=thief, headers=headers)
    assert missing.status == 400
    assert await error_code(missing) == "password_required"
    wrong = await client.put(
        path, json={**thief, "current_password": "guess-1234"}, headers=headers
    )
    assert wrong.status == 400
    assert await error_code(wrong) == "wrong_password"
    profile = await expect_json(await client.get("/v1/user/profile", headers=headers))
    assert profile["email"] == owner.email
    # Neither the username nor the unchanged address needs it.
    same = {"email": owner.email.upper(), "username": f"{owner.username}x"}
    assert (await client.put(path, json=same, headers=headers)).status == 200
    assert inbox.messages.empty()

    moved = await client.put(
        path, json={"email": "Moved@Example.com", "current_password": PASSWORD}, headers=headers
    )
    assert (await expect_json(moved))["email"] == "moved@example.com"
    mails: dict[str, str] = {}
    for _ in range(2):
        message = await inbox.next()
        mails[message["To"]] = _body(message)
    assert set(mails) == {owner.email, "moved@example.com"}
    assert "moved@example.com" in mails[owner.email]
    assert "administrator" in mails[owner.email]


async def test_password_change_ends_other_sessions_and_keeps_keys_by_default(
    client: Client, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    owner = await register(client)
    other_session = await _login(client, owner)
    key = bearer(await create_api_key(client, owner))
    assert await _status(client, key) == 200  # now in the API-key cache
    assert await _status(client, other_session) == 200  # its session check too
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    answer = await expect_json(await client.put("/v1/user/password", json=change,
                                                headers=owner.headers))  # fmt: skip
    assert (answer["revoked_sessions"], answer["revoked_api_keys"]) == (1, 0)
    assert await _status(client, owner.headers) == 200
    assert await _status(client, other_session) == 401
    assert await _status(client, key) == 200
    mail = await inbox.next()
    assert mail["To"] == owner.email
    assert "was changed" in mail["Subject"]
    assert "Signed out: 1 other session(s)" in _body(mail)


async def test_password_change_revokes_api_keys_when_asked_and_keeps_sessions_when_asked(
    client: Client, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    owner = await register(client)
    other_session = await _login(client, owner)
    keys = [bearer(await create_api_key(client, owner, f"k{n}")) for n in range(2)]
    for key in keys:
        assert await _status(client, key) == 200
    change = {
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
        "revoke_sessions": False,
        "revoke_api_keys": True,
    }
    # Through one of the keys: it is revoked with the rest.
    answer = await expect_json(await client.put("/v1/user/password", json=change,
                                                headers=keys[0]))  # fmt: skip
    assert (answer["revoked_sessions"], answer["revoked_api_keys"]) == (0, 2)
    assert [await _status(client, key) for key in keys] == [401, 401]
    assert await _status(client, other_session) == 200
    assert await _status(client, owner.headers) == 200
    assert "Revoked: 2 API key(s)" in _body(await inbox.next())


async def _reset(api: Client, inbox: Inbox, account: Account, **flags: bool) -> Any:
    await api.post("/v1/auth/forgot-password", json={"email": account.email})
    match = re.search(r"^Token: (\S+)\r?$", _body(await inbox.next()), re.MULTILINE)
    assert match
    body = {"token": match.group(1), "new_password": NEW_PASSWORD, **flags}
    return await expect_json(await api.post("/v1/auth/reset-password", json=body))


async def test_reset_revokes_every_session_and_api_key_by_default(
    client: Client, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    owner = await register(client)
    key = bearer(await create_api_key(client, owner))
    assert await _status(client, key) == 200
    answer = await _reset(client, inbox, owner)
    assert (answer["revoked_sessions"], answer["revoked_api_keys"]) == (1, 1)
    assert await _status(client, key) == 401
    assert await _status(client, owner.headers) == 401
    mail = await inbox.next()
    assert (mail["To"], mail["Subject"]) == (owner.email, "Your Encedeus password was reset")
    assert "Revoked: 1 API key(s)" in _body(mail)


async def test_reset_may_keep_sessions_and_keys(client: Client, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    owner = await register(client)
    key = bearer(await create_api_key(client, owner))
    answer = await _reset(client, inbox, owner, revoke_sessions=False, revoke_api_keys=False)
    assert (answer["revoked_sessions"], answer["revoked_api_keys"]) == (0, 0)
    assert await _status(client, key) == 200
    assert await _status(client, owner.headers) == 200
    assert "was reset" in (await inbox.next())["Subject"]


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [("PUT", "/v1/user/password", "new_password"), ("PUT", "/v1/user/profile", "email")],
)
async def test_a_stolen_token_cannot_guess_the_current_password_at_full_speed(
    make_config: ConfigFactory, method: str, path: str, field: str
) -> None:
    api = await start_client(make_config(auth_rate_limit=3))
    try:
        owner = await register(api)
        value = "moved@example.com" if field == "email" else NEW_PASSWORD

        async def attempt(password: str) -> Any:
            body = {field: value, "current_password": password}
            return await api.request(method, path, json=body, headers=owner.headers)

        for n in range(3):
            assert (await attempt(f"guess-{n:04}")).status == 400
        # The budget is per account (not per address); even the right password waits.
        blocked = await attempt(PASSWORD)
        assert blocked.status == 429
        assert await error_code(blocked) == "rate_limited"
    finally:
        await api.close()
