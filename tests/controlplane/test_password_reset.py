"""Forgot/reset password end to end through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.controlplane.accounts_support import PASSWORD, bearer, error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


class Inbox:
    """aiosmtpd handler keeping every received message."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.put_nowait(message_from_bytes(envelope.original_content or b""))
        return "250 OK"

    async def next(self, timeout: float = 10.0) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd's protocol) on the test's own event loop."""
    inbox = Inbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(inbox, hostname="localhost"), "127.0.0.1", 0
    )
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


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
    old = await client.post(
        "/v1/auth/login", json={"username": account.username, "password": PASSWORD}
    )
    assert old.status == 401
    new = await client.post(
        "/v1/auth/login", json={"username": account.username, "password": "a-new-password"}
    )
    assert new.status == 200

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
