"""E-mail notifications through a real SMTP server (aiosmtpd): the owner is mailed when
a task ends or a deployment fails, nobody else, and only when enabled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.events.bus import Event, EventType
from controlplane.events.mail_notifications import mail_for
from controlplane.state import EVENT_BUS, MAIL_NOTIFIER
from tests.controlplane.accounts_support import register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.smtp_support import Inbox

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

pytestmark = pytest.mark.usefixtures("blocking_guard")


@SQLITE_ONLY
async def test_owner_is_mailed_when_a_task_ends(
    make_config: ConfigFactory, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    config = make_config(
        smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none", email_notifications=True
    )
    client = await start_client(config)
    try:
        alice = await register(client)
        # The notifier follows the log from the newest event when it first starts.
        await asyncio.wait_for(client.app[MAIL_NOTIFIER].following.wait(), 10)
        bus = client.app[EVENT_BUS]
        bus.publish(Event(EventType.TASK_STARTED, owner_id=alice.id, task_id="t0"))
        data = {"name": "nightly", "status": "Failed", "exit_code": 3}
        bus.publish(Event(EventType.TASK_FAILED, owner_id=alice.id, task_id="t1", data=data))
        mail = await inbox.next()
        assert mail["To"] == alice.email
        assert mail["Subject"] == "Task nightly failed"
        body = mail.get_payload(decode=True)
        assert isinstance(body, bytes)
        assert b"Exit code: 3" in body
        await asyncio.sleep(0.2)
        assert inbox.messages.empty()
        assert client.app[MAIL_NOTIFIER].sent == 1
    finally:
        await client.close()


def test_only_endings_and_failures_are_mailed() -> None:
    failed = Event(EventType.DEPLOYMENT_STATUS_CHANGED, owner_id="u", deployment_id="d",
                   data={"status": "failed", "app_name": "web"})  # fmt: skip
    running = Event(EventType.DEPLOYMENT_STATUS_CHANGED, owner_id="u", deployment_id="d",
                    data={"status": "running"})  # fmt: skip
    mail = mail_for(failed)
    assert mail is not None
    assert mail[0] == "Deployment web failed"
    assert mail_for(running) is None
    assert mail_for(Event(EventType.NODE_DOWN, node_id="n")) is None


@SQLITE_ONLY
async def test_disabled_by_default(api: Any) -> None:
    assert MAIL_NOTIFIER not in api.app
