"""The in-process event bus: fan-out, filters, bounded buffers, thread hops."""

from __future__ import annotations

import asyncio

from controlplane.events.bus import Event, EventBus, EventType


async def test_fan_out_to_every_subscriber_in_order() -> None:
    bus = EventBus()
    first = bus.subscribe()
    second = bus.subscribe()
    for n in range(3):
        bus.publish(Event(EventType.TASK_STARTED, task_id=str(n)))
    for sub in (first, second):
        got = [await sub.get() for _ in range(3)]
        assert [e.task_id for e in got if e] == ["0", "1", "2"]


async def test_filter_limits_what_a_subscriber_sees() -> None:
    bus = EventBus()
    async with bus.subscribe(lambda e: e.owner_id == "alice") as sub:
        bus.publish(Event(EventType.TASK_STARTED, owner_id="bob", task_id="b"))
        bus.publish(Event(EventType.TASK_STARTED, owner_id="alice", task_id="a"))
        event = await asyncio.wait_for(sub.get(), 1)
        assert event is not None
        assert event.task_id == "a"
        assert sub.get_nowait() is None


async def test_slow_subscriber_drops_instead_of_blocking() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=2)
    fast = bus.subscribe(maxsize=10)
    for n in range(5):
        bus.publish(Event(EventType.NODE_UP, node_id=str(n)))
    assert slow.dropped == 3
    assert fast.dropped == 0
    assert [slow.get_nowait(), slow.get_nowait(), slow.get_nowait()][2] is None


async def test_failing_filter_never_reaches_the_publisher() -> None:
    bus = EventBus()

    def broken(event: Event) -> bool:
        raise RuntimeError("boom")

    sub = bus.subscribe(broken)
    bus.publish(Event(EventType.NODE_UP))
    assert sub.get_nowait() is None


async def test_close_ends_iteration_and_unsubscribes() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    received: list[Event] = []

    async def consume() -> None:
        async for event in sub:
            received.append(event)

    consumer = asyncio.create_task(consume())
    bus.publish(Event(EventType.NODE_UP))
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(consumer, 1)
    assert len(received) == 1
    assert bus.subscriber_count == 0


async def test_publish_from_another_thread_hops_onto_the_loop() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    await asyncio.to_thread(bus.publish, Event(EventType.NODE_DOWN, node_id="n1"))
    event = await asyncio.wait_for(sub.get(), 1)
    assert event is not None
    assert event.node_id == "n1"


def test_wire_shape_follows_seed_004() -> None:
    event = Event(
        EventType.DEPLOYMENT_STATUS_CHANGED, deployment_id="d1", data={"status": "running"}
    )
    body = event.to_json()
    assert body["type"] == "deployment_status_changed"
    assert body["deployment_id"] == "d1"
    assert body["timestamp"].endswith("Z")
    assert body["data"] == {"status": "running"}
    assert "task_id" not in body
