"""The receiving side of `bench/events.py`, in a process of its own, so that what the
clients cost is not charged to the server measured.

    event_receivers.py ws  <notifications URL> <access token> <clients> <phases>
    event_receivers.py pg  <PostgreSQL DSN>    <channel>      <clients> <phases>

`ws`: that many notification WebSocket clients; `pg`: that many receivers behind one
asyncpg connection LISTENing on the channel (the bare reference). `phases` is
`name:count,...`. Every message is JSON parsed the same way (an event's `data`, or
the NOTIFY payload, holds `phase` and `sent`, a `time.monotonic()` stamp: one clock
for every process of the machine). Prints one JSON line `{"ready": true}` once every
client is connected, then per phase, once every client has received all of its
events, `{"phase", "last", "latencies"}` (`last`: monotonic time of the last
receive). Run without arguments it does nothing (`make bench` runs all of bench/).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]


class Tally:
    """What every client received, per phase; reports a phase when it is complete."""

    def __init__(self, clients: int, phases: dict[str, int]) -> None:
        self.phases = phases
        self.counts = {name: [0] * clients for name in phases}
        self.complete = dict.fromkeys(phases, 0)
        self.latencies: dict[str, list[float]] = {name: [] for name in phases}

    def received(self, client: int, data: dict[str, Any]) -> None:
        now = time.monotonic()
        phase = data.get("phase")
        if phase not in self.phases:
            return
        self.latencies[phase].append(now - data["sent"])
        counts = self.counts[phase]
        counts[client] += 1
        if counts[client] == self.phases[phase]:
            self.complete[phase] += 1
            if self.complete[phase] == len(counts):
                report = {"phase": phase, "last": now, "latencies": self.latencies[phase]}
                print(json.dumps(report), flush=True)


async def _websocket_client(
    http: aiohttp.ClientSession, url: str, token: str, index: int, tally: Tally,
    connected: Callable[[], None],
) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    async with http.ws_connect(url, headers=headers, max_msg_size=0) as socket:
        await socket.receive_json()  # authenticated
        await socket.send_json({"type": "ping"})
        await socket.receive_json()  # pong
        connected()
        async for message in socket:
            event = json.loads(message.data)
            tally.received(index, event.get("data", {}))


async def _listener(dsn: str, channel: str, clients: int, tally: Tally) -> Any:
    """One LISTENing connection that hands every notification to `clients` receivers,
    each parsing it as a WebSocket client parses its message (100 connections of their
    own would exceed a default PostgreSQL's max_connections)."""
    connection = await asyncpg.connect(dsn)

    def notified(*args: Any) -> None:
        for index in range(clients):
            tally.received(index, json.loads(args[3]))

    await connection.add_listener(channel, notified)
    return connection


async def _until_stdin_closes() -> None:
    await asyncio.to_thread(sys.stdin.read)


async def receive(mode: str, target: str, auth: str, clients: int, phases: str) -> None:
    counts = {name: int(n) for name, _, n in (p.partition(":") for p in phases.split(","))}
    tally = Tally(clients, counts)
    ready = asyncio.Event()
    connected = [0]

    def one_connected() -> None:
        connected[0] += 1
        if connected[0] == clients:
            ready.set()

    if mode == "pg":
        listener = await _listener(target, auth, clients, tally)
        print(json.dumps({"ready": True}), flush=True)
        await _until_stdin_closes()
        await listener.close()
        return
    async with aiohttp.ClientSession() as http:
        tasks = [
            asyncio.create_task(_websocket_client(http, target, auth, i, tally, one_connected))
            for i in range(clients)
        ]
        await asyncio.wait_for(ready.wait(), 60)
        print(json.dumps({"ready": True}), flush=True)
        await _until_stdin_closes()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__" and len(sys.argv) == 6:
    mode, target, auth, clients, phases = sys.argv[1:]
    asyncio.run(receive(mode, target, auth, int(clients), phases))
