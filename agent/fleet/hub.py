"""Fan-out of lifecycle events to every open Watch stream."""

from __future__ import annotations

import asyncio
import itertools
import time

from protos import agent_pb2 as pb

SUBSCRIBER_QUEUE = 1000


class WatchHub:
    """Numbers events (`seq`) and hands each to every subscriber.

    A subscriber that falls SUBSCRIBER_QUEUE events behind is dropped: its queue gets
    None, its stream ends, and the control plane reconnects and resyncs from the next
    heartbeat. Loop-thread only.
    """

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._subscribers: set[asyncio.Queue[pb.WatchEvent | None]] = set()

    def stamp(self, event: pb.WatchEvent) -> pb.WatchEvent:
        event.time_ms = int(time.time() * 1000)
        event.seq = next(self._seq)
        return event

    def publish(self, lifecycle: pb.LifecycleEvent) -> None:
        event = self.stamp(pb.WatchEvent(lifecycle=lifecycle))
        for queue in list(self._subscribers):
            if queue.qsize() >= SUBSCRIBER_QUEUE:
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[pb.WatchEvent | None]:
        queue: asyncio.Queue[pb.WatchEvent | None] = asyncio.Queue(SUBSCRIBER_QUEUE + 1)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[pb.WatchEvent | None]) -> None:
        self._subscribers.discard(queue)

    def close(self) -> None:
        """End every subscription (shutdown): each queue gets None."""
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        self._subscribers.clear()
