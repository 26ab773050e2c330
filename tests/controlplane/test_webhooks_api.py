"""Per-account webhooks: CRUD and isolation, delivery of the owner's events only (signed
with the account's secret), and private addresses refused unless allowed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from controlplane.api import owned_rows
from controlplane.api import webhooks as webhooks_api
from controlplane.db.tables.events import WebhookCursor
from controlplane.events.bus import Event, EventType
from controlplane.events.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from controlplane.state import DATABASE, EVENT_BUS, WEBHOOKS
from tests.controlplane.accounts_support import error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.local_http import serve_app
from tests.outbound_support import LOOPBACK_HOSTS

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.usefixtures("blocking_guard"),
]


@dataclass
class Inbox:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    box = Inbox()

    async def hook(request: web.Request) -> web.Response:
        box.received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve_app(app) as url:
        box.url = f"{url}/hook"
        yield box


async def test_crud_and_isolation(api: TestClient[Any, Any]) -> None:
    alice = await register(api)
    bob = await register(api)
    created = await api.post(
        "/v1/webhooks", json={"url": "https://hooks.example.com/a"}, headers=alice.headers
    )
    body = await created.json()
    assert created.status == 201, body
    assert body["secret"].startswith("whsec_")
    listed = await (await api.get("/v1/webhooks", headers=alice.headers)).json()
    assert [w["id"] for w in listed["webhooks"]] == [body["id"]]
    assert "secret" not in listed["webhooks"][0]
    assert (await (await api.get("/v1/webhooks", headers=bob.headers)).json())["webhooks"] == []
    assert (await api.delete(f"/v1/webhooks/{body['id']}", headers=bob.headers)).status == 404
    assert (await api.delete(f"/v1/webhooks/{body['id']}", headers=alice.headers)).status == 200


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "http://127.0.0.1:8080/x", "http://[::1]/x", "http://10.0.0.1/"]
)
async def test_refused_urls(api: TestClient[Any, Any], url: str) -> None:
    alice = await register(api)
    response = await api.post("/v1/webhooks", json={"url": url}, headers=alice.headers)
    assert response.status == 422
    assert await error_code(response) == "url_refused"


async def test_no_literal_spelling_of_loopback_is_accepted(api: TestClient[Any, Any]) -> None:
    """Finding 1 of issue 9: a full-width `127.0.0.1` was accepted and then POSTed
    to. Names (localhost) are refused at delivery, see below."""
    alice = await register(api)
    for host in (h for h in LOOPBACK_HOSTS if not h[0].isalpha()):
        url = f"http://{host}:8080/hook"
        response = await api.post("/v1/webhooks", json={"url": url}, headers=alice.headers)
        assert response.status == 422, (host, await response.text())
        assert await error_code(response) == "url_refused"


async def wait_for(condition: Any, timeout: float = 5) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_owner_events_delivered_signed(make_config: ConfigFactory, inbox: Inbox) -> None:
    client = await start_client(make_config(webhook_allow_private=True))
    try:
        alice = await register(client)
        bob = await register(client)
        created = await (
            await client.post("/v1/webhooks", json={"url": inbox.url}, headers=alice.headers)
        ).json()
        bus = client.app[EVENT_BUS]
        bus.publish(Event(EventType.TASK_FAILED, owner_id=bob.id, task_id="t-bob"))
        bus.publish(Event(EventType.TASK_SUCCEEDED, owner_id=alice.id, task_id="t-alice",
                          data={"status": "Succeeded"}))  # fmt: skip
        await wait_for(lambda: inbox.received)
        await asyncio.sleep(0.2)
        assert len(inbox.received) == 1
        headers, body = inbox.received[0]
        assert verify(created["secret"], headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        payload = json.loads(body)
        assert payload["task_id"] == "t-alice"
        assert payload["user_id"] == alice.id
        assert payload["status"] == "Succeeded"
    finally:
        await client.close()


async def test_names_resolving_to_private_addresses_are_refused_at_delivery(
    api: TestClient[Any, Any], inbox: Inbox
) -> None:
    alice = await register(api)
    url = inbox.url.replace("127.0.0.1", "localhost")
    created = await api.post("/v1/webhooks", json={"url": url}, headers=alice.headers)
    assert created.status == 201
    dispatcher = api.app[WEBHOOKS]
    api.app[EVENT_BUS].publish(Event(EventType.TASK_STARTED, owner_id=alice.id, task_id="t"))
    await wait_for(lambda: dispatcher.failed == 1)
    assert inbox.received == []


async def test_a_new_webhook_has_its_cursor_when_the_outbox_first_sees_it(
    api: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox starts a worker for a webhook as soon as the row is committed, and
    the worker writes the webhook's cursor if there is none. The API must have
    written it with the row: writing it after, it collided with the worker's (500)."""
    alice = await register(api)
    database = api.app[DATABASE]
    real_add_own = owned_rows.add_own

    async def add_then_outbox_looks(*args: Any, **kwargs: Any) -> None:
        await real_add_own(*args, **kwargs)
        hook = args[1]
        async with database.transaction() as session:  # what the worker does
            if await session.get(WebhookCursor, str(hook.id)) is None:
                session.add(WebhookCursor(endpoint=str(hook.id), cursor=0))

    monkeypatch.setattr(webhooks_api, "add_own", add_then_outbox_looks)
    answer = await api.post(
        "/v1/webhooks", json={"url": "https://hooks.example.com/x"}, headers=alice.headers
    )
    assert answer.status == 201, await answer.text()
