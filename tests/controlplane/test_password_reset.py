"""Forgot/reset password end to end through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email.message import Message
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import (
    PASSWORD,
    bearer,
    error_code,
    login_status,
    register,
)
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.smtp_support import Inbox

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


def _token(message: Message) -> str:
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(r"^Token: (\S+)\r?$", body.decode(), re.MULTILINE)
    assert match, body
    return match.group(1)


@pytest.fixture
async def client(make_config: ConfigFactory, smtp: tuple[Inbox, int]) -> AsyncIterator[Client]:
    _, port = smtp
    config = make_config(smtp_host="127.0.0.1", smtp_port=port, email_from="cp@example.com")
    client = await start_client(config)
    try:
        yield client
    finally:
        await client.close()


async def test_reset_by_mailed_token_changes_password_and_ends_sessions(
    client: Client, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    account = await register(client)
    response = await client.post("/v1/auth/forgot-password", json={"email": account.email})
    assert response.status == 200
    mail = await inbox.next()
    assert mail["To"] == account.email
    assert mail["From"] == "cp@example.com"
    token = _token(mail)

    reset = await client.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "a-new-password"}
    )
    assert reset.status == 200
    assert (await client.get("/v1/user/profile", headers=account.headers)).status == 401
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refresh.status == 401
    assert await login_status(client, account.username, PASSWORD) == 401
    assert await login_status(client, account.username, "a-new-password") == 200

    reused = await client.post(
        "/v1/auth/reset-password", json={"token": token, "new_password": "another-password"}
    )
    assert reused.status == 400
    assert await error_code(reused) == "invalid_reset_token"


async def test_forgot_password_answers_the_same_for_unknown_addresses(
    client: Client, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    account = await register(client)
    known = await client.post("/v1/auth/forgot-password", json={"email": account.email})
    unknown = await client.post("/v1/auth/forgot-password", json={"email": "nobody@example.com"})
    assert known.status == unknown.status == 200
    assert await known.json() == await unknown.json()
    await inbox.next()
    await asyncio.sleep(0.2)
    assert inbox.messages.empty()


async def test_reset_rejects_unknown_tokens_and_weak_passwords(client: Client) -> None:
    account = await register(client)
    bad_token = await client.post(
        "/v1/auth/reset-password", json={"token": "nope", "new_password": "a-new-password"}
    )
    assert bad_token.status == 400
    assert await error_code(bad_token) == "invalid_reset_token"
    weak = await client.post(
        "/v1/auth/reset-password", json={"token": "x", "new_password": "short"}
    )
    assert weak.status == 400
    assert await error_code(weak) == "validation_error"
    assert (
        await client.get("/v1/user/profile", headers=bearer(account.access_token))
    ).status == 200


async def test_email_from_name_is_the_senders_display_name(
    make_config: ConfigFactory, smtp: tuple[Inbox, int]
) -> None:
    """Seed 004's EMAIL_FROM_NAME (email_from_name) reaches a real SMTP server."""
    inbox, port = smtp
    config = make_config(
        smtp_host="127.0.0.1",
        smtp_port=port,
        email_from="cp@example.com",
        email_from_name="Container Engine",
    )
    client = await start_client(config)
    try:
        account = await register(client)
        await client.post("/v1/auth/forgot-password", json={"email": account.email})
        mail = await inbox.next()
    finally:
        await client.close()
    assert mail["From"] == "Container Engine <cp@example.com>"


async def test_the_mail_links_to_the_web_uis_reset_page_when_public_url_is_set(
    make_config: ConfigFactory, smtp: tuple[Inbox, int]
) -> None:
    """With `public_url` the mail carries a link to the UI's reset page, the token in
    the fragment (kept out of every server's access log); without it, no link."""
    inbox, port = smtp
    config = make_config(
        smtp_host="127.0.0.1", smtp_port=port, public_url="https://panel.example.com/"
    )
    client = await start_client(config)
    try:
        account = await register(client)
        await client.post("/v1/auth/forgot-password", json={"email": account.email})
        mail = await inbox.next()
    finally:
        await client.close()
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    token = _token(mail)
    assert f"Or open https://panel.example.com/reset-password#token={token}\r\n" in body.decode()


async def test_without_public_url_the_mail_has_no_link(
    client: Client, smtp: tuple[Inbox, int]
) -> None:
    inbox, _ = smtp
    account = await register(client)
    await client.post("/v1/auth/forgot-password", json={"email": account.email})
    body = (await inbox.next()).get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "reset-password" not in body.decode()
