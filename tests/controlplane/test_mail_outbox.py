"""The durable mail outbox: a mail posted while the SMTP server is down survives the
process that posted it and is sent by the next one to a real SMTP server."""

from __future__ import annotations

import asyncio
import socket

from sqlmodel import select

from common.cancellation import cancel_and_wait
from controlplane.db.engine import Database
from controlplane.db.tables.events import MailMessage
from controlplane.mail import MailOutbox, SmtpMailer
from tests.controlplane.conftest import ConfigFactory
from tests.controlplane.smtp_support import smtp_server


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def stored(database: Database) -> list[MailMessage]:
    async with database.session() as session:
        return list((await session.exec(select(MailMessage))).all())


async def test_a_mail_posted_while_smtp_is_down_is_sent_after_a_restart(
    database: Database, make_config: ConfigFactory
) -> None:
    down = make_config(smtp_host="127.0.0.1", smtp_port=closed_port(), smtp_tls="none")
    first = MailOutbox(SmtpMailer(down), "encedeus@example.com", database)
    first.retry_base = 1.0
    worker = asyncio.create_task(first.run())
    first.post("alice@example.com", "Task t failed", "Exit code: 1\n")
    async with asyncio.timeout(10):
        while not (rows := await stored(database)) or rows[0].attempts == 0:
            await asyncio.sleep(0.05)
    await cancel_and_wait(worker)  # the process goes away with the mail unsent
    assert rows[0].status == "pending"
    assert rows[0].last_error

    async with smtp_server() as (inbox, port):
        up = make_config(smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
        second = MailOutbox(SmtpMailer(up), "encedeus@example.com", database)
        async with second.running():
            message = await inbox.next()
        assert message["Subject"] == "Task t failed"
        assert message["To"] == "alice@example.com"
    assert [row.status for row in await stored(database)] == ["sent"]
