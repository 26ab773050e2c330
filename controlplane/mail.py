"""Outgoing e-mail: an SMTP sender (aiosmtplib), or the log when no SMTP host is set.

Handlers never wait on SMTP: they drop messages into the :class:`MailOutbox`, whose
worker (owned by the app's cleanup context) sends them. This also keeps response
times independent of whether a mail was sent (forgot-password must not leak that).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formataddr
from typing import Protocol

import aiosmtplib
from sqlmodel import col, select

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.db.tables.events import MailMessage
from controlplane.db.types import utcnow

log = get_logger(__name__)
SEND_ATTEMPTS = 5
RETRY_BASE_SECONDS = 2.0
POLL_SECONDS = 1.0


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
    """The outbox of outgoing mail and the worker that sends it.

    `post` never blocks. With a database the outbox is durable: a posted message is
    written to the `mail_outbox` table at once (by the worker's writer), sent from
    there, retried with back-off (a failed send does not hold up the others) and
    marked `dead` after SEND_ATTEMPTS; what a stopped or killed process left pending
    is sent by the next one. Writing (:meth:`write`, every process) and sending
    (:meth:`deliver`, the leader's duty when several control planes share the
    database) are separate loops; :meth:`run` is both. Without a database it is an
    in-memory queue. On shutdown the worker writes what was posted and (when it
    delivers) sends what is due, within a time limit.
    """

    def __init__(self, mailer: Mailer, sender: str, database: Database | None = None) -> None:
        self._mailer = mailer
        self._sender = sender
        self._db = database
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._queued = asyncio.Event()  # posted, not written yet
        self._posted = asyncio.Event()  # written: the deliverer has work
        self.retry_base = RETRY_BASE_SECONDS

    def post(self, to: str, subject: str, body: str) -> None:
        """Queue a plain-text mail to `to`."""
        self._queue.put_nowait((to, subject, body))
        self._queued.set()

    def _message(self, to: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        return message

    async def _send(self, message: EmailMessage) -> str | None:
        """One attempt; the error, or None when the mail system took it."""
        try:
            await self._mailer.send(message)
            return None
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("mail_send_failed", to=message["To"], error=str(exc))
            return str(exc) or type(exc).__name__

    def wake(self) -> None:
        """Messages were written to the table (by another writer): send them now."""
        self._posted.set()

    async def run(self) -> None:
        """Write and send queued messages until cancelled (one process: both halves)."""
        if self._db is None:
            while True:
                await self._send_in_memory(await self._queue.get())
        async with asyncio.TaskGroup() as group:
            group.create_task(self.write())
            group.create_task(self.deliver())

    async def write(self) -> None:
        """Write posted messages to the table until cancelled (every process)."""
        while True:
            await self._queued.wait()
            self._queued.clear()
            try:
                await self._write_posted()
            except Exception as exc:  # a database blip: keep them, try again shortly
                log.warning("mail_not_written", error=str(exc))
                await asyncio.sleep(1.0)
                self._queued.set()
                continue
            self._posted.set()

    async def deliver(self) -> None:
        """Send the table's due messages until cancelled (with several control
        planes, the leader only: :mod:`controlplane.leadership`)."""
        while True:
            self._posted.clear()
            due = await self._send_due()
            _raise_if_cancelled()
            if not due:
                # asyncio.wait, not wait_for: on Python 3.11 wait_for may swallow a
                # cancel that meets the deadline.
                posted = asyncio.ensure_future(self._posted.wait())
                try:
                    await asyncio.wait([posted], timeout=POLL_SECONDS)
                finally:
                    posted.cancel()

    async def _send_in_memory(self, mail: tuple[str, str, str]) -> None:
        for attempt in range(1, SEND_ATTEMPTS + 1):
            if await self._send(self._message(*mail)) is None:
                return
            if attempt < SEND_ATTEMPTS:
                await asyncio.sleep(min(self.retry_base**attempt, 10))
        log.error("mail_dropped", to=mail[0], subject=mail[1])

    async def _write_posted(self) -> None:
        assert self._db is not None
        posted = []
        while not self._queue.empty():
            posted.append(self._queue.get_nowait())
        if not posted:
            return
        try:
            async with self._db.transaction() as session:
                session.add_all(MailMessage(to=to, subject=s, body=b) for to, s, b in posted)
        except BaseException:
            for mail in posted:  # not written: they stay queued
                self._queue.put_nowait(mail)
            raise

    async def _send_due(self) -> int:
        """Send the messages that are due; how many there were."""
        assert self._db is not None
        query = (
            select(MailMessage)
            .where(
                col(MailMessage.status) == "pending", col(MailMessage.next_attempt_at) <= utcnow()
            )
            .order_by(col(MailMessage.id))
            .limit(20)
        )
        async with self._db.session() as session:
            due = (await session.exec(query)).all()
        for row in due:
            error = await self._send(self._message(row.to, row.subject, row.body))
            async with self._db.transaction() as session:
                stored = await session.get(MailMessage, row.id)
                if stored is None:
                    continue
                stored.attempts += 1
                stored.last_error = (error or "")[:500]
                if error is None:
                    stored.status = "sent"
                elif stored.attempts >= SEND_ATTEMPTS:
                    stored.status = "dead"
                    log.error("mail_dropped", to=row.to, subject=row.subject)
                else:
                    delay = min(self.retry_base**stored.attempts, 60.0)
                    stored.next_attempt_at = utcnow() + timedelta(seconds=delay)
        return len(due)

    @contextlib.asynccontextmanager
    async def running(
        self, drain_timeout: float = 5.0, *, deliver: bool = True
    ) -> AsyncIterator[None]:
        """Run the worker for the duration of the block, then write what was posted and
        send what is due (within `drain_timeout`) and stop it. With `deliver=False`
        (a database shared by several control planes) only write: the leader runs
        :meth:`deliver`."""
        work = self.run() if deliver or self._db is None else self.write()
        worker = asyncio.create_task(work, name="mail-outbox")
        try:
            yield
        finally:
            await cancel_and_wait(worker)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    await self._drain(deliver)

    async def _drain(self, deliver: bool) -> None:
        if self._db is None:
            while not self._queue.empty():
                await self._send_in_memory(self._queue.get_nowait())
            return
        await self._write_posted()
        if deliver:
            await self._send_due()


def _raise_if_cancelled() -> None:
    """aiosmtplib may swallow a cancellation that arrives mid-conversation; honour it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
