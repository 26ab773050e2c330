"""`GET /v1/events` (JSON pages and Server-Sent Events) and the webhook deliveries
endpoints, on both engines."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlmodel import select

from controlplane.db.tables.events import WebhookCursor
from controlplane.events.bus import Event, EventType
from controlplane.events.webhooks import EVENT_ID_HEADER
from controlplane.state import DATABASE, EVENT_BUS, WEBHOOK_OUTBOX
from tests.controlplane.accounts_support import register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.sql_support import statements_run
from tests.local_http import serve_app

pytestmark = pytest.mark.usefixtures("blocking_guard")


async def record(api: TestClient[Any, Any], events: list[Event]) -> None:
    async with api.app[DATABASE].transaction() as session:
        for event in events:
            await api.app[EVENT_BUS].record(session, event)


async def test_json_pages_show_own_events_and_admins_everything(
    api: TestClient[Any, Any],
) -> None:
    admin = await register(api)
    alice = await register(api)
    await record(api, [
        Event(EventType.TASK_STARTED, owner_id=alice.id, task_id="t1"),
        Event(EventType.NODE_UP, node_id="n1"),
        Event(EventType.TASK_FAILED, owner_id=alice.id, task_id="t1"),
        Event(EventType.TASK_STARTED, owner_id=admin.id, task_id="t2"),
    ])  # fmt: skip
    response = await api.get("/v1/events?limit=1", headers=alice.headers)
    page = await response.json()
    assert [e["type"] for e in page["events"]] == ["task_started"]
    assert page["has_more"] is True
    rest = await (await api.get(f"/v1/events?since={page['cursor']}",
                                headers=alice.headers)).json()  # fmt: skip
    assert [e["type"] for e in rest["events"]] == ["task_failed"]
    assert rest["has_more"] is False
    everything = await (await api.get("/v1/events?types=node_up,task_started",
                                      headers=admin.headers)).json()  # fmt: skip
    assert [e["type"] for e in everything["events"]] == ["task_started", "node_up", "task_started"]


async def test_server_sent_events_resume_from_last_event_id(api: TestClient[Any, Any]) -> None:
    alice = await register(api)
    await record(api, [Event(EventType.TEST, owner_id=alice.id, data={"n": n}) for n in range(3)])
    first = (await (await api.get("/v1/events", headers=alice.headers)).json())["events"][0]
    headers = {**alice.headers, "Accept": "text/event-stream",
               "Last-Event-ID": str(first["cursor"])}  # fmt: skip
    response = await api.get("/v1/events", headers=headers)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    await record(api, [Event(EventType.TEST, owner_id=alice.id, data={"n": 3})])
    seen: list[str] = []
    async with asyncio.timeout(5):
        while len([line for line in seen if line.startswith("data:")]) < 3:
            seen.append((await response.content.readline()).decode().strip())
    ids = [int(line[4:]) for line in seen if line.startswith("id:")]
    assert ids == sorted(ids)
    assert ids[0] == first["cursor"] + 1
    response.close()


async def test_an_expired_cursor_is_410(api: TestClient[Any, Any]) -> None:
    alice = await register(api)
    await record(api, [Event(EventType.TEST, owner_id=alice.id) for _ in range(3)])
    async with api.app[DATABASE].transaction() as session:
        await session.exec(text("DELETE FROM events WHERE id < (SELECT max(id) FROM events)"))
    response = await api.get("/v1/events?since=1", headers=alice.headers)
    assert response.status == 410
    assert (await response.json())["error"]["code"] == "cursor_expired"


@pytest.fixture
async def open_api(make_config: ConfigFactory) -> AsyncIterator[TestClient[Any, Any]]:
    """A control plane whose per-account webhooks may reach loopback receivers."""
    client = await start_client(make_config(webhook_allow_private=True))
    try:
        yield client
    finally:
        await client.close()


async def test_deliveries_show_attempts_and_a_failed_one_can_be_replayed(
    open_api: TestClient[Any, Any],
) -> None:
    api = open_api
    alice = await register(api)
    answers = [400, 204]
    received: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(request.headers[EVENT_ID_HEADER])
        return web.Response(status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve_app(app) as url:
        created = await (await api.post("/v1/webhooks", json={"url": f"{url}/hook"},
                                        headers=alice.headers)).json()  # fmt: skip
        deliveries = f"/v1/webhooks/{created['id']}/deliveries"
        await record(api, [Event(EventType.TASK_STARTED, owner_id=alice.id, task_id="t")])

        async def listed() -> list[dict[str, Any]]:
            body = await (await api.get(deliveries, headers=alice.headers)).json()
            items: list[dict[str, Any]] = body["deliveries"]
            return items

        async with asyncio.timeout(10):
            while not (items := await listed()) or items[0]["status"] == "pending":
                await asyncio.sleep(0.05)
        assert items[0]["status"] == "failed"  # a 4xx is not retried
        assert items[0]["last_status_code"] == 400
        assert items[0]["attempts"] == 1
        replay = f"{deliveries}/{items[0]['id']}/replay"
        assert (await api.post(replay, headers=alice.headers)).status == 200
        async with asyncio.timeout(10):
            while (await listed())[0]["status"] != "delivered":
                await asyncio.sleep(0.05)
        assert received == [items[0]["event_key"]] * 2
        assert (await api.post(replay, headers=alice.headers)).status == 409
        other = await register(api)
        assert (await api.get(deliveries, headers=other.headers)).status == 404


async def test_an_idle_webhook_worker_does_not_look_for_deliveries_on_others_events(
    open_api: TestClient[Any, Any],
) -> None:
    """With no pending delivery, another account's event costs a receiver's worker
    no query of its deliveries (40 receivers made it 40 queries per event)."""
    api = open_api
    alice, bob = await register(api), await register(api)
    hook = {"url": "http://127.0.0.1:9/hook"}
    assert (await api.post("/v1/webhooks", json=hook, headers=alice.headers)).status == 201
    await asyncio.sleep(0.5)  # alice's worker starts and finds nothing to send
    with statements_run(api) as statements:
        for _ in range(20):
            await record(api, [Event(EventType.TEST, owner_id=bob.id)])
            await asyncio.sleep(0.05)
    looks = [s for s in statements if "FROM webhook_deliveries" in s]
    assert len(looks) <= 3, looks


async def test_a_new_webhook_costs_no_cursor_cleanup_a_deleted_one_loses_its_cursor(
    open_api: TestClient[Any, Any],
) -> None:
    api = open_api
    alice = await register(api)
    hook = {"url": "http://127.0.0.1:9/hook"}
    first = await (await api.post("/v1/webhooks", json=hook, headers=alice.headers)).json()
    await asyncio.sleep(0.5)  # the outbox's first refresh (it cleans up once at start)
    with statements_run(api) as statements:
        assert (await api.post("/v1/webhooks", json=hook, headers=alice.headers)).status == 201
        await asyncio.sleep(0.5)
    assert not [s for s in statements if s.startswith("DELETE FROM webhook_cursors")]
    assert (await api.delete(f"/v1/webhooks/{first['id']}", headers=alice.headers)).status == 200
    async with asyncio.timeout(10):
        while True:
            async with api.app[DATABASE].session() as session:
                row = await session.get(WebhookCursor, first["id"])
            if row is None:
                break
            await asyncio.sleep(0.05)


async def test_a_rest_stop_announces_the_status_it_writes(api: TestClient[Any, Any]) -> None:
    """The REST stop writes `stopped` itself (the reconciler then derives the same
    status and says nothing): the change must still reach subscribers."""
    alice = await register(api)
    made = await api.post(
        "/v1/deployments",
        json={"app_name": f"stop-{uuid.uuid4().hex[:6]}", "image": "encedeus/busybox:latest"},
        headers=alice.headers,
    )
    assert made.status == 201, await made.text()
    deployment_id = (await made.json())["id"]
    stopped = await api.post(f"/v1/deployments/{deployment_id}/stop", headers=alice.headers)
    assert stopped.status == 200, await stopped.text()

    async def announced() -> list[str]:
        page = await (await api.get("/v1/events", headers=alice.headers)).json()
        return [
            e["data"]["status"]
            for e in page["events"]
            if e["type"] == "deployment_status_changed" and e["deployment_id"] == deployment_id
        ]

    # The reconciler may announce the `failed` (no node) it derived before the stop.
    async with asyncio.timeout(5):
        while (await announced())[-1:] != ["stopped"]:
            await asyncio.sleep(0.05)


async def test_the_cursor_cleanup_spares_a_webhook_made_after_its_read(
    open_api: TestClient[Any, Any],
) -> None:
    """The cleanup's list of receivers is read before it deletes: a webhook created in
    between (with its cursor) must keep its cursor, or its first events are skipped."""
    api = open_api
    alice = await register(api)
    hook = {"url": "http://127.0.0.1:9/hook"}
    made = await (await api.post("/v1/webhooks", json=hook, headers=alice.headers)).json()
    async with api.app[DATABASE].transaction() as session:
        session.add(WebhookCursor(endpoint=str(uuid.uuid4()), cursor=0))  # a gone receiver
        session.add(WebhookCursor(endpoint="not-a-receiver", cursor=0))
    outbox = api.app[WEBHOOK_OUTBOX]
    await outbox._forget_gone(set())  # as if read before the webhook existed
    async with api.app[DATABASE].session() as session:
        kept = (await session.exec(select(WebhookCursor.endpoint))).all()
    assert made["id"] in kept
    assert "not-a-receiver" not in kept
    assert len(kept) == len([k for k in kept if k == made["id"] or k in outbox._followers])
