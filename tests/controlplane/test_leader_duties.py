"""Webhook delivery, mail notifications and delivery, and event pruning run on the
leader only, and a follower that becomes leader picks them up: two control planes on
one real PostgreSQL, a real SMTP server (aiosmtpd) and a real webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import select

from controlplane.db.engine import Database
from controlplane.db.tables.events import MailMessage, WebhookDelivery
from controlplane.events.bus import Event, EventType
from controlplane.state import DATABASE, EVENT_BUS, LEADERSHIP, MAIL_NOTIFIER
from tests.controlplane.accounts_support import register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.smtp_support import Inbox

pytestmark = [
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
    pytest.mark.usefixtures("blocking_guard"),
]

LEADER_DUTIES = {"webhook-delivery", "mail-notifications", "mail-delivery", "event-pruning"}
Client = TestClient[Any, Any]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
    """A webhook receiver: (the payloads it got, in order; its URL)."""
    got: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield got, str(server.make_url("/hook"))
    finally:
        await server.close()


async def _until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def _until_finished(database: Database) -> None:
    async with asyncio.timeout(10):
        while True:
            async with database.session() as session:
                mails = (await session.exec(select(MailMessage.status))).all()
                hooks = (await session.exec(select(WebhookDelivery.status))).all()
            if set(mails) == {"sent"} and hooks and set(hooks) == {"delivered"}:
                return
            await asyncio.sleep(0.05)


def _leads(client: Client) -> bool:
    running: frozenset[str] = client.app[LEADERSHIP].running_duties
    return running >= LEADER_DUTIES


async def test_only_the_leader_delivers_and_the_next_leader_takes_over(
    make_config: ConfigFactory,
    tmp_path: Path,
    smtp: tuple[Inbox, int],
    receiver: tuple[list[dict[str, Any]], str],
) -> None:
    inbox, port = smtp
    hooks, url = receiver

    def member(name: str) -> Any:
        return make_config(
            data_dir=tmp_path / name, instance_name=name, email_notifications=True,
            smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none", webhook_url=url,
            leader_retry_seconds=0.1, leader_probe_seconds=0.2,
        )  # fmt: skip

    a = await start_client(member("cp-a"))
    b: Client | None = None
    try:
        await _until(lambda: _leads(a))
        b = await start_client(member("cp-b"))
        alice = await register(b)
        await asyncio.wait_for(a.app[MAIL_NOTIFIER].following.wait(), 10)
        assert not LEADER_DUTIES & b.app[LEADERSHIP].running_duties
        assert not b.app[MAIL_NOTIFIER].following.is_set()

        async def task_failed(task_id: str) -> None:
            assert b is not None
            data = {"name": task_id, "status": "Failed", "exit_code": 1}
            b.app[EVENT_BUS].publish(
                Event(EventType.TASK_FAILED, owner_id=alice.id, task_id=task_id, data=data)
            )
            mail = await inbox.next()
            assert mail["Subject"] == f"Task {task_id} failed"

        def delivered(task_id: str) -> int:
            return sum(1 for hook in hooks if hook.get("task_id") == task_id)

        # Published through the follower: the leader mails it and calls the webhook.
        await task_failed("t1")
        await _until(lambda: delivered("t1") == 1)
        assert b.app[MAIL_NOTIFIER].sent == 0
        # Delivery is at least once: wait until the leader has written both outcomes,
        # so that nothing may be sent again after the handover.
        await _until_finished(b.app[DATABASE])

        await a.close()  # the leader goes away: its lease connection ends
        await _until(lambda: b is not None and _leads(b))
        await task_failed("t2")
        await _until(lambda: delivered("t2") == 1)
        await asyncio.sleep(0.3)
        assert inbox.messages.empty()  # each mail exactly once
        assert delivered("t1") == 1
        assert delivered("t2") == 1
    finally:
        await a.close()
        if b is not None:
            await b.close()
