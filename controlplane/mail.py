"""Outgoing e-mail: an SMTP sender (aiosmtplib), or the log when no SMTP host is set.

Handlers never wait on SMTP: they drop messages into the :class:`MailOutbox`, whose
worker (owned by the app's cleanup context) sends them. This also keeps response
times independent of whether a mail was sent (forgot-password must not leak that).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import formataddr
from typing import Protocol

import aiosmtplib

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from controlplane.config import ControlPlaneConfig

log = get_logger(__name__)
SEND_ATTEMPTS = 3


class Mailer(Protocol):
    """Delivers one message or raises; may be slow."""

    async def send(self, message: EmailMessage) -> None:
        """Hand `message` to the mail system."""


class SmtpMailer:
    """Sends through an SMTP server with the SMTP_* settings."""

    def __init__(self, config: ControlPlaneConfig) -> None:
        self._config = config

    async def send(self, message: EmailMessage) -> None:
        config = self._config
        tls = config.smtp_tls
        await aiosmtplib.send(
            message,
            hostname=config.smtp_host,
            port=config.smtp_port,
            username=config.smtp_username or None,
            password=config.smtp_password or None,
            use_tls=tls == "tls",
            start_tls=None if tls == "auto" else tls == "starttls",
            timeout=30,
        )


class LogMailer:
    """Writes each message to the log (no SMTP host configured)."""

    async def send(self, message: EmailMessage) -> None:
        log.info(
            "mail",
            to=message["To"],
            subject=message["Subject"],
            body=message.get_content(),
        )


def sender_of(config: ControlPlaneConfig) -> str:
    """The From header: `email_from`, as `"Name" <address>` when `email_from_name` is set
    (seed 004's EMAIL_FROM_NAME)."""
    if not config.email_from_name:
        return config.email_from
    return formataddr((config.email_from_name, config.email_from))


def mailer_for(config: ControlPlaneConfig) -> Mailer:
    """SMTP when a host is configured, else the log."""
    return SmtpMailer(config) if config.smtp_host else LogMailer()


class MailOutbox:
    """A queue of messages and the worker that sends them.

    `post` never blocks. A message that fails SEND_ATTEMPTS times is logged and
    dropped. On shutdown the worker sends what is queued, within a time limit.
    """

    def __init__(self, mailer: Mailer, sender: str) -> None:
        self._mailer = mailer
        self._sender = sender
        self._queue: asyncio.Queue[EmailMessage] = asyncio.Queue()

    def post(self, to: str, subject: str, body: str) -> None:
        """Queue a plain-text mail to `to`."""
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        self._queue.put_nowait(message)

    async def _deliver(self, message: EmailMessage) -> None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await self._mailer.send(message)
                return
            except (aiosmtplib.SMTPException, OSError) as exc:
                log.warning("mail_send_failed", to=message["To"], attempt=attempt, error=str(exc))
                if attempt < SEND_ATTEMPTS:  # no wait before giving up: it holds the queue
                    await asyncio.sleep(min(2**attempt, 10))
        log.error("mail_dropped", to=message["To"], subject=message["Subject"])

    async def run(self) -> None:
        """Send queued messages until cancelled."""
        while True:
            message = await self._queue.get()
            try:
                await self._deliver(message)
            finally:
                self._queue.task_done()

    @contextlib.asynccontextmanager
    async def running(self, drain_timeout: float = 5.0) -> AsyncIterator[None]:
        """Run the worker for the duration of the block, then drain and stop it."""
        worker = asyncio.create_task(self.run(), name="mail-outbox")
        try:
            yield
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_timeout)
            await cancel_and_wait(worker)
