"""Events published → delivered to 100 notification WebSocket clients, against bare
PostgreSQL LISTEN/NOTIFY delivered to the same 100 receivers, same run, same
database.

Our side: a control plane (in this process, on a fresh PostgreSQL database); one
account's 100 WebSocket clients connected to `/v1/ws/notifications`, in RECEIVER
processes of their own (`bench/event_receivers.py`), so that the clients' work is not
charged to the server. Each event is recorded in a transaction of its own (the
transactional outbox, which NOTIFYs the feed), read back once by the feed, serialised
once and sent to every client.

The reference: the same 100 receivers, in the same RECEIVER processes, behind one
asyncpg connection per process LISTENing on a channel (100 connections of their own
would exceed a default PostgreSQL's `max_connections`, shared with everything else),
each parsing every notification as a WebSocket client parses its message; as many
connections as publishers send bare `NOTIFY`s (autocommit, one transaction each)
whose payload is the same JSON.

Both sides run two phases:
- paced: RATE events/s for SECONDS, each published on schedule (not after the
  previous one committed); `p50_ms`/`p99_ms` = publish called → received by a client,
  over every (event, client) pair;
- flat out: BURST events as fast as PUBLISHERS concurrent publishers (API requests,
  agents' reports) can commit them; events/s fully delivered to all 100 clients.

`value` = our flat-out events/s, `reference` = the bare NOTIFY's, `ratio` = value /
reference; `committed_rate` = our flat-out events/s committed (publishers done), which
tells the commit path (durable, serialised: see docs/protocols/events.md) from the
fan-out. Goals: p99 ≤ 50 ms at 200 events/s to 100 clients; ratio ≥ 0.5. The last
line also holds the load average (the machine may be shared).

Set ENCEDEUS_BENCH_POSTGRES_URL (default: the test suite's PostgreSQL).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
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
RECEIVERS = 2
RATE = 200
SECONDS = 5
BURST = 1000
PUBLISHERS = 8
CHANNEL = "bench_events"
RECEIVER_SCRIPT = Path(__file__).with_name("event_receivers.py")
POSTGRES_URL = os.environ.get(
    "ENCEDEUS_BENCH_POSTGRES_URL",
    "postgresql+asyncpg://encedeus:encedeus@127.0.0.1:5432/encedeus_test",
)
Publish = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


def _dsn(url: str, database: str | None = None) -> str:
    base, _, name = url.replace("+asyncpg", "").rpartition("/")
    return f"{base}/{database or name}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class Receivers:
    """RECEIVERS processes holding CLIENTS clients between them."""

    def __init__(self, mode: str, target: str, auth: str) -> None:
        self._args = (mode, target, auth)
        self._processes: list[asyncio.subprocess.Process] = []
        self.phases = f"paced:{RATE * SECONDS},burst:{BURST}"

    async def __aenter__(self) -> Receivers:
        share = CLIENTS // RECEIVERS
        for _ in range(RECEIVERS):
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(RECEIVER_SCRIPT), *self._args, str(share), self.phases,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26,
            )  # fmt: skip
            self._processes.append(process)
        for process in self._processes:
            assert (await self._line(process, 90)).get("ready")
        return self

    async def __aexit__(self, *_: object) -> None:
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.close()
        for process in self._processes:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def _line(self, process: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("a receiver process ended early")
        report: dict[str, Any] = json.loads(line)
        return report

    async def phase(self, name: str) -> tuple[float, list[float]]:
        """When the last client received the phase's last event, and every latency."""
        last, latencies = 0.0, []
        for process in self._processes:
            report = await self._line(process, 120)
            assert report["phase"] == name
            last = max(last, report["last"])
            latencies.extend(report["latencies"])
        return last, latencies


async def measure(receivers: Receivers, publish: Publish) -> dict[str, float]:
    """Paced then flat out through `publish`, as the receivers saw it."""
    start = time.monotonic()
    in_flight: set[asyncio.Task[None]] = set()
    for n in range(RATE * SECONDS):
        delay = start + n / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # On schedule whether or not the previous one has committed: the rate offered
        # is RATE, as from independent API requests.
        stamped = {"phase": "paced", "n": n, "sent": time.monotonic()}
        task = asyncio.create_task(publish(stamped))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    _, paced = await receivers.phase("paced")
    start = time.monotonic()
    numbers = iter(range(BURST))

    async def publisher() -> None:
        for n in numbers:
            await publish({"phase": "burst", "n": n, "sent": time.monotonic()})

    await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
    committed = time.monotonic()
    last, _ = await receivers.phase("burst")
    paced.sort()
    return {
        "rate": BURST / (last - start),
        "committed_rate": BURST / (committed - start),
        "p50_ms": statistics.median(paced) * 1000,
        "p99_ms": paced[int(len(paced) * 0.99) - 1] * 1000,
    }


async def ours(database_url: str, tmp: Path) -> dict[str, float]:
    config = ControlPlaneConfig(listen_address="127.0.0.1", port=0, data_dir=tmp / "data",
                                database_url=database_url, auth_rate_limit=100000,
                                jwt_secret="bench-secret-0123456789abcdef",  # noqa: S106
                                secrets_key="YmVuY2gtc2VjcmV0cy1rZXktMDEyMzQ1Njc4OWFiY2Q=",
                                notification_sockets_per_account=CLIENTS)  # fmt: skip
    app = build_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    bus, database = app[EVENT_BUS], app[DATABASE]
    try:
        async with aiohttp.ClientSession() as http:
            body = {"username": "bench", "email": "bench@example.com", "password": "bench-pass-1"}
            async with http.post(f"{base}/v1/auth/register", json=body) as response:
                registered = await response.json()
        owner = registered["user"]["id"]

        async def publish(data: dict[str, Any]) -> None:
            async with database.transaction() as session:
                await bus.record(session, Event("test", owner_id=owner, data=data))

        url = base.replace("http", "ws", 1) + "/v1/ws/notifications"
        async with Receivers("ws", url, registered["access_token"]) as receivers:
            return await measure(receivers, publish)
    finally:
        await runner.cleanup()


async def bare_notify(dsn: str) -> dict[str, float]:
    senders = await asyncpg.create_pool(dsn, min_size=PUBLISHERS, max_size=PUBLISHERS)

    async def publish(data: dict[str, Any]) -> None:
        await senders.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(data))

    try:
        async with Receivers("pg", dsn, CHANNEL) as receivers:
            return await measure(receivers, publish)
    finally:
        await senders.close()


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
          f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms; bare NOTIFY to "
          f"{CLIENTS} listeners: {reference['rate']:.0f}/s, paced p50 "
          f"{reference['p50_ms']:.1f} ms p99 {reference['p99_ms']:.1f} ms")  # fmt: skip
    print(json.dumps({
        "bench": "events", "value": round(result["rate"], 1),
        "reference": round(reference["rate"], 1),
        "ratio": round(result["rate"] / reference["rate"], 3), "unit": "events/s",
        "p50_ms": round(result["p50_ms"], 2), "p99_ms": round(result["p99_ms"], 2),
        "committed_rate": round(result["committed_rate"], 1),
        "reference_p50_ms": round(reference["p50_ms"], 2),
        "reference_p99_ms": round(reference["p99_ms"], 2),
        "clients": CLIENTS, "receiver_processes": RECEIVERS, "paced_rate": RATE,
        "publishers": PUBLISHERS,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
