"""A real SMTP server (aiosmtpd's protocol) for mail tests; the `smtp` fixture in
conftest.py serves it on the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email import message_from_bytes
from email.message import Message

from aiosmtpd.smtp import SMTP, Envelope, Session


class Inbox:
    """aiosmtpd handler keeping every received message."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.put_nowait(message_from_bytes(envelope.original_content or b""))
        return "250 OK"

    async def next(self, timeout: float = 10.0) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)


@asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[Inbox, int]]:
    """An SMTP server on 127.0.0.1 and a free port: (its inbox, its port)."""
    inbox = Inbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(inbox, hostname="localhost"), "127.0.0.1", 0
    )
    try:
        yield inbox, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
