"""Resuming the notifications WebSocket from a cursor, on both engines: a client that
was away gets exactly what it missed, in order, then live events with no gap and no
duplicate; a cursor older than the retained log gets `cursor_expired`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.db.types import utcnow
from controlplane.events.bus import Event, EventType
from controlplane.events.store import Retention
from controlplane.state import DATABASE, EVENT_BUS, EVENT_FEED
from tests.controlplane.accounts_support import Account, register
from tests.controlplane.test_events_notifications import assert_silent, connect, next_event

pytestmark = pytest.mark.usefixtures("blocking_guard")


async def record(api: TestClient[Any, Any], events: list[Event]) -> None:
    """Each event in a transaction of its own, as the changes they describe are."""
    for event in events:
        async with api.app[DATABASE].transaction() as session:
            await api.app[EVENT_BUS].record(session, event)


def status_event(owner: Account, number: int) -> Event:
    return Event(
        EventType.DEPLOYMENT_STATUS_CHANGED,
        owner_id=owner.id,
        deployment_id=f"d-{number}",
        data={"status": "running", "n": number},
    )


async def test_a_client_resumes_with_exactly_the_100_events_it_missed(
    api: TestClient[Any, Any],
) -> None:
    await register(api)  # the admin
    alice = await register(api)
    bob = await register(api)
    socket = await connect(api, alice)
    await record(api, [status_event(alice, 0)])
    first = await next_event(socket)
    cursor = first["cursor"]
    await socket.close()

    missed = []
    for number in range(1, 101):
        missed.append(status_event(alice, number))
        missed.append(status_event(bob, number))  # not alice's: never replayed to her
    await record(api, missed)

    socket = await connect(api, alice)
    await socket.send_json({"type": "subscribe", "topics": ["deployments"], "since": cursor})
    assert (await next_event(socket))["type"] == "subscribed"
    replayed = [await next_event(socket) for _ in range(100)]
    assert [e["data"]["n"] for e in replayed] == list(range(1, 101))
    cursors = [e["cursor"] for e in replayed]
    assert cursors == sorted(cursors)
    assert cursors[0] > cursor
    await assert_silent(socket)
    # Live again, with no duplicate at the seam.
    await record(api, [status_event(alice, 101)])
    live = await next_event(socket)
    assert live["data"]["n"] == 101
    assert live["cursor"] > cursors[-1]
    await assert_silent(socket)
    await socket.close()


async def test_a_seed_002_subscribe_resumes_too(api: TestClient[Any, Any]) -> None:
    alice = await register(api)
    await record(api, [status_event(alice, 1), status_event(alice, 2)])
    socket = await connect(api, alice)
    await socket.send_json({"command": "subscribe", "state": 7,
                            "data": {"topics": ["deployments"], "since": 0}})  # fmt: skip
    reply = await next_event(socket)
    assert reply["type"] == "subscribed"
    assert reply["state"] == 7
    assert [(await next_event(socket))["data"]["n"] for _ in range(2)] == [1, 2]
    await socket.close()


async def test_an_expired_cursor_gets_cursor_expired(api: TestClient[Any, Any]) -> None:
    alice = await register(api)
    old = utcnow() - timedelta(days=2)
    await record(api, [Event("test", owner_id=alice.id, timestamp=old) for _ in range(5)])
    await record(api, [status_event(alice, 1)])
    await api.app[EVENT_FEED].store.horizon.advance()  # what the feed does on commit
    cursors = [e.cursor or 0 for e in await api.app[EVENT_FEED].store.read_after(0)]
    assert await api.app[EVENT_FEED].store.prune(Retention()) == 5

    socket = await connect(api, alice)
    await socket.send_json({"type": "subscribe", "topics": ["deployments"], "since": cursors[1]})
    assert (await next_event(socket))["type"] == "subscribed"
    error = await next_event(socket)
    assert error["type"] == "error"
    assert error["error"]["code"] == "cursor_expired"
    # The socket stays open and live.
    await record(api, [status_event(alice, 2)])
    assert (await next_event(socket))["data"]["n"] == 2
    await socket.send_json({"type": "subscribe", "topics": [], "since": 10**9})
    assert (await next_event(socket))["type"] == "subscribed"
    assert (await next_event(socket))["error"]["code"] == "invalid_cursor"
    await socket.close()
