"""Events published → delivered to 100 notification WebSocket clients, against a bare
PostgreSQL LISTEN/NOTIFY round trip on the same database, in the same run.

Our side: a control plane (in this process, on a fresh PostgreSQL database) with 100
WebSocket clients of one account connected to `/v1/ws/notifications`. Each event is
recorded in a transaction of its own (the transactional outbox), read back once by the
feed, serialised once and sent to every client.

- Paced phase: RATE events/s for SECONDS; `p50_ms`/`p99_ms` = commit → received by a
  client, over every (event, client) pair.
- Flat-out phase: BURST events back to back; `value` = events/s fully delivered to
  all 100 clients.

`reference`: BURST bare `NOTIFY`s (asyncpg, autocommit, one transaction each) received
by one `LISTEN`ing connection, as events/s. `ratio` = value / reference.
Goals: p99 ≤ 50 ms at 200 events/s to 100 clients; ratio ≥ 0.5.

Set ENCEDEUS_BENCH_POSTGRES_URL (default: the test suite's PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from aiohttp import web

from controlplane.app import build_app
from controlplane.config import ControlPlaneConfig
from controlplane.events.bus import Event
from controlplane.state import DATABASE, EVENT_BUS

CLIENTS = 100
RATE = 200
SECONDS = 5
BURST = 1000
POSTGRES_URL = os.environ.get(
    "ENCEDEUS_BENCH_POSTGRES_URL",
    "postgresql+asyncpg://encedeus:encedeus@127.0.0.1:5432/encedeus_test",
)


def _dsn(url: str, database: str | None = None) -> str:
    base, _, name = url.replace("+asyncpg", "").rpartition("/")
    return f"{base}/{database or name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Clients:
    """The WebSocket clients and what they received: (n, latency) per message."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {}
        self.counts = [0] * CLIENTS
        self.done = asyncio.Event()
        self.target = 0

    async def run(self, http: aiohttp.ClientSession, url: str, token: str, index: int,
                  ready: asyncio.Event, connected: list[int]) -> None:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        async with http.ws_connect(url, headers=headers, max_msg_size=0) as socket:
            await socket.receive_json()  # authenticated
            await socket.send_json({"type": "ping"})
            await socket.receive_json()  # pong
            connected[0] += 1
            if connected[0] == CLIENTS:
                ready.set()
            async for message in socket:
                now = time.perf_counter()
                event = json.loads(message.data)
                data = event.get("data", {})
                if "sent" not in data:
                    continue
                self.latencies.setdefault(data["phase"], []).append(now - data["sent"])
                self.counts[index] += 1
                if min(self.counts) >= self.target:
                    self.done.set()


async def publish(
    app: web.Application, owner: str, phase: str, count: int, rate: float | None
) -> None:
    bus, database = app[EVENT_BUS], app[DATABASE]
    start = time.perf_counter()
    for n in range(count):
        if rate is not None:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with database.transaction() as session:
            event = Event("test", owner_id=owner, data={"n": n, "phase": phase})
            # The commit time is what counts: stamp it as late as possible.
            stamped = Event(event.type, owner_id=event.owner_id,
                            data={**event.data, "sent": time.perf_counter()})  # fmt: skip
            await bus.record(session, stamped)


async def ours(database_url: str, tmp: Path) -> dict[str, float]:
    config = ControlPlaneConfig(listen_address="127.0.0.1", port=0, data_dir=tmp / "data",
                                database_url=database_url, auth_rate_limit=100000,
                                jwt_secret="bench-secret-0123456789abcdef",  # noqa: S106
                                notification_sockets_per_account=CLIENTS)  # fmt: skip
    app = build_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    clients = Clients()
    try:
        async with aiohttp.ClientSession() as http:
            body = {"username": "bench", "email": "bench@example.com", "password": "bench-pass-1"}
            async with http.post(f"{base}/v1/auth/register", json=body) as response:
                registered = await response.json()
            owner = registered["user"]["id"]
            ready, connected = asyncio.Event(), [0]
            url, token = f"{base}/v1/ws/notifications", registered["access_token"]
            tasks = [
                asyncio.create_task(clients.run(http, url, token, i, ready, connected))
                for i in range(CLIENTS)
            ]
            await asyncio.wait_for(ready.wait(), 60)
            clients.target = RATE * SECONDS
            await publish(app, owner, "paced", RATE * SECONDS, RATE)
            await asyncio.wait_for(clients.done.wait(), 60)
            clients.done.clear()
            clients.target += BURST
            start = time.perf_counter()
            await publish(app, owner, "burst", BURST, None)
            await asyncio.wait_for(clients.done.wait(), 120)
            burst_rate = BURST / (time.perf_counter() - start)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await runner.cleanup()
    paced = sorted(clients.latencies["paced"])
    return {
        "rate": burst_rate,
        "p50_ms": statistics.median(paced) * 1000,
        "p99_ms": paced[int(len(paced) * 0.99) - 1] * 1000,
    }


async def bare_notify(dsn: str) -> float:
    listener, sender = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    got = asyncio.Event()
    received = [0]

    def on_notify(*_: Any) -> None:
        received[0] += 1
        if received[0] == BURST:
            got.set()

    try:
        await listener.add_listener("bench_events", on_notify)
        start = time.perf_counter()
        for n in range(BURST):
            await sender.execute(f"NOTIFY bench_events, '{n}'")
        await asyncio.wait_for(got.wait(), 60)
        return BURST / (time.perf_counter() - start)
    finally:
        await listener.close()
        await sender.close()


async def main() -> None:
    name = f"enc_bench_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    database_url = POSTGRES_URL.rpartition("/")[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = await ours(database_url, Path(tmp))
        reference = await bare_notify(_dsn(POSTGRES_URL, name))
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"ours: {result['rate']:.0f} events/s to {CLIENTS} clients, paced {RATE}/s "
          f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms; "
          f"bare NOTIFY: {reference:.0f}/s")  # fmt: skip
    print(json.dumps({
        "bench": "events", "value": round(result["rate"], 1), "reference": round(reference, 1),
        "ratio": round(result["rate"] / reference, 3), "unit": "events/s",
        "p50_ms": round(result["p50_ms"], 2), "p99_ms": round(result["p99_ms"], 2),
        "clients": CLIENTS, "paced_rate": RATE,
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
