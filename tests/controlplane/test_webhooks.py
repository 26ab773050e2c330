"""Webhooks delivered to a real aiohttp receiver on 127.0.0.1: payload, signature, retry."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult

from common.outbound import OutboundPolicy
from controlplane.events.bus import Event, EventBus, EventType
from controlplane.events.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AiohttpWebhookTransport,
    Delivery,
    RetryPolicy,
    WebhookDispatcher,
    WebhookEndpoint,
    verify,
)
from tests.local_http import serve_app
from tests.outbound_support import StaticResolver

SECRET = "whsec-test"
FAST_RETRY = RetryPolicy(max_attempts=4, base=0.05, cap=0.2)
LOOPBACK_ALLOWED = OutboundPolicy(allow_private=True, timeout_seconds=2)


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    answer_status: int = 200
    calls: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        state.calls.append((dict(request.headers), await request.read()))
        if len(state.calls) <= state.fail_first:
            return web.Response(status=503)
        state.got.set()
        return web.Response(status=state.answer_status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serve_app(app) as url:
        state.url = f"{url}/hook"
        yield state


async def run_dispatcher(
    bus: EventBus, endpoints: list[WebhookEndpoint]
) -> tuple[WebhookDispatcher, AiohttpWebhookTransport, asyncio.Task[None]]:
    transport = AiohttpWebhookTransport(LOOPBACK_ALLOWED)
    dispatcher = WebhookDispatcher(bus, endpoints, transport, retry=FAST_RETRY)
    task = asyncio.create_task(dispatcher.run())
    while bus.subscriber_count == 0:
        await asyncio.sleep(0.01)
    return dispatcher, transport, task


async def stop(task: asyncio.Task[None], transport: AiohttpWebhookTransport) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await transport.close()


async def test_signed_payload_after_retries(receiver: Receiver) -> None:
    receiver.fail_first = 2
    bus = EventBus()
    dispatcher, transport, task = await run_dispatcher(bus, [WebhookEndpoint(receiver.url, SECRET)])
    bus.publish(
        Event(
            EventType.DEPLOYMENT_STATUS_CHANGED,
            owner_id="u1",
            deployment_id="d1",
            data={"status": "running", "app_name": "web"},
        )
    )
    await asyncio.wait_for(receiver.got.wait(), 5)
    await stop(task, transport)

    assert len(receiver.calls) == 3
    headers, body = receiver.calls[-1]
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("other", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["type"] == "deployment_status_changed"
    assert payload["deployment_id"] == "d1"
    assert payload["status"] == "running"
    assert payload["app_name"] == "web"
    assert payload["user_id"] == "u1"
    assert dispatcher.delivered == 1


async def test_gives_up_after_max_attempts_without_blocking_publishers() -> None:
    bus = EventBus()
    # Nothing listens on this port: every attempt fails fast.
    dispatcher, transport, task = await run_dispatcher(
        bus, [WebhookEndpoint("http://127.0.0.1:9/hook", SECRET)]
    )
    bus.publish(Event(EventType.NODE_DOWN, node_id="n1"))
    for _ in range(200):
        if dispatcher.failed:
            break
        await asyncio.sleep(0.02)
    await stop(task, transport)
    assert dispatcher.failed == 1
    assert dispatcher.delivered == 0


async def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.answer_status = 410
    bus = EventBus()
    dispatcher, transport, task = await run_dispatcher(bus, [WebhookEndpoint(receiver.url, SECRET)])
    bus.publish(Event(EventType.TASK_FAILED, owner_id="u1", task_id="t1"))
    await asyncio.wait_for(receiver.got.wait(), 5)
    for _ in range(50):
        if dispatcher.failed:
            break
        await asyncio.sleep(0.02)
    await stop(task, transport)
    assert len(receiver.calls) == 1
    assert dispatcher.failed == 1


async def test_per_user_endpoint_sees_only_its_owner(receiver: Receiver) -> None:
    bus = EventBus()
    _dispatcher, transport, task = await run_dispatcher(
        bus, [WebhookEndpoint(receiver.url, SECRET, owner_id="alice")]
    )
    bus.publish(Event(EventType.TASK_STARTED, owner_id="bob", task_id="b"))
    bus.publish(Event(EventType.TASK_STARTED, owner_id="alice", task_id="a"))
    await asyncio.wait_for(receiver.got.wait(), 5)
    await asyncio.sleep(0.1)
    await stop(task, transport)
    assert [json.loads(body)["task_id"] for _, body in receiver.calls] == ["a"]


def test_logs_show_only_scheme_and_host_of_a_receiver() -> None:
    endpoint = WebhookEndpoint("https://bot:pw@hooks.example.com:8443/T0/B0/s3cr3t?token=x")
    assert endpoint.log_url == "https://hooks.example.com:8443"


class ResolvesLater(StaticResolver):
    """Fails like the system resolver `failures` times, then knows its names."""

    def __init__(self, names: dict[str, list[str]], failures: int) -> None:
        super().__init__(names)
        self.lookups = 0
        self._failures = failures

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        self.lookups += 1
        if self.lookups <= self._failures:
            return await super().resolve("never.test", port)
        return await super().resolve(host, port, family)


@contextlib.asynccontextmanager
async def owner_dispatcher(
    policy: OutboundPolicy, resolver: StaticResolver
) -> AsyncIterator[WebhookDispatcher]:
    transport = AiohttpWebhookTransport(policy, resolver=resolver)
    try:
        yield WebhookDispatcher(EventBus(), [], transport, retry=FAST_RETRY)
    finally:
        await transport.close()


def owner_delivery(url: str) -> Delivery:
    return Delivery(WebhookEndpoint(url, SECRET, owner_id="alice"), "task_started", b"{}")


async def test_a_name_that_does_not_resolve_is_retried_like_any_failure(
    receiver: Receiver,
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://hooks.test:{port}/hook"
    resolver = ResolvesLater({"hooks.test": ["127.0.0.1"]}, failures=2)
    async with owner_dispatcher(LOOPBACK_ALLOWED, resolver) as dispatcher:
        delivery = owner_delivery(url)
        assert await dispatcher.deliver(delivery)
        assert delivery.attempts == 3
        assert len(receiver.calls) == 1

        never = owner_delivery("http://missing.test/hook")
        assert not await dispatcher.deliver(never)
        assert never.attempts == FAST_RETRY.max_attempts


@pytest.mark.parametrize("host", ["１２７．０．０．１", "127.1", "public.test"])  # noqa: RUF001
async def test_per_account_deliveries_to_loopback_are_refused_once(
    receiver: Receiver, host: str
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    closed = OutboundPolicy(timeout_seconds=2)
    names = StaticResolver({"public.test": ["127.0.0.1"]})
    async with owner_dispatcher(closed, names) as dispatcher:
        delivery = owner_delivery(f"http://{host}:{port}/hook")
        assert not await dispatcher.deliver(delivery)
    assert delivery.attempts == 1  # a refusal is final: retrying cannot help
    assert receiver.calls == []
