"""The ceiling of `events.py` on this machine: its 100 WebSocket clients fed by a server
that does nothing else.

`events.py`'s receivers (`bench/event_receivers.py`, ws mode: 100 clients in 2
processes of their own) connect to a bare aiohttp WebSocket endpoint in this process
that answers their handshake as `/v1/ws/notifications` does; publishing an event is
one `json.dumps` and one frame written to every socket's transport (what the control
plane's feed does after it has read the event back, and nothing before: no database,
no transaction, no HTTP). Then `events.py`'s two phases, with its own `measure()`:
paced (RATE events/s for SECONDS, p50/p99 publish → received) and flat out (BURST
events, events/s delivered to all 100 clients).

`value` = flat-out events/s, `p50_ms`/`p99_ms` = the paced phase's: no control plane
delivers events to these clients faster or sooner than this, whatever its storage. A
yardstick, no goal of its own; compare with `events.py`'s `reference` (bare NOTIFY to
the same receivers).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from events import BURST, CLIENTS, RATE, RECEIVERS, SECONDS, Receivers, measure

from common.websocket_frames import text_frame


class Fanout:
    """The bare endpoint and its sockets."""

    def __init__(self) -> None:
        self.sockets: list[asyncio.Transport] = []
        self._cursors = itertools.count(1)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_json({"type": "authenticated"})
        await socket.receive_json()  # ping
        await socket.send_json({"type": "pong"})
        assert request.transport is not None
        self.sockets.append(request.transport)
        async for _ in socket:
            pass
        return socket

    async def publish(self, data: dict[str, Any]) -> None:
        event = {"type": "event", "event": "test", "cursor": next(self._cursors), "data": data}
        frame = text_frame(json.dumps(event, separators=(",", ":")).encode())
        for transport in self.sockets:
            transport.write(frame)
        await asyncio.sleep(0)  # as a publisher's await would: the loop goes on


async def main() -> None:
    fanout = Fanout()
    app = web.Application()
    app.router.add_get("/v1/ws/notifications", fanout.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"ws://127.0.0.1:{runner.addresses[0][1]}/v1/ws/notifications"
    try:
        async with Receivers("ws", url, "no-token") as receivers:
            result = await measure(receivers, fanout.publish)
    finally:
        await runner.cleanup()
    print(json.dumps({
        "bench": "noop_fanout", "value": round(result["rate"], 1), "unit": "events/s",
        "p50_ms": round(result["p50_ms"], 2), "p99_ms": round(result["p99_ms"], 2),
        "clients": CLIENTS, "receiver_processes": RECEIVERS, "paced_rate": RATE,
        "paced_seconds": SECONDS, "events": BURST,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
