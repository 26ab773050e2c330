"""The floor under `events.py`'s flat-out figure: what a durable event costs PostgreSQL
and the bare driver alone, against the bare NOTIFY that `events.py` takes as reference.

Same run, same fresh database, PUBLISHERS connections of raw asyncpg (no ORM, no HTTP,
no fan-out), BURST events each way, one transaction per event:
- `notify`: `SELECT pg_notify(channel, payload)` in autocommit, `events.py`'s reference
  (one connection LISTENs throughout, as there);
- `insert`: one `INSERT` of a row shaped like `events` (bigserial id, type, owner,
  JSON data, time) in autocommit: the least a durable event needs, a committed row;
- `insert_notify`: the same insert, then `pg_notify` of its id on the same connection
  once it committed: the least a transactional outbox that wakes its readers needs.

`value` = `insert_notify`'s events/s, `reference` = `notify`'s, `ratio` = value /
reference: no implementation that writes each event durably before it announces it
delivers faster than this on this machine, whatever it does after the commit. A
yardstick, no goal of its own. Set ENCEDEUS_BENCH_POSTGRES_URL as for `events.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).parent))
from events import BURST, CHANNEL, POSTGRES_URL, PUBLISHERS, _admin, _dsn

TABLE = """CREATE TABLE floor_events (
    id BIGSERIAL PRIMARY KEY, type VARCHAR(64) NOT NULL, owner_id VARCHAR(36),
    data JSON NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
INSERT = "INSERT INTO floor_events (type, owner_id, data) VALUES ($1, $2, $3) RETURNING id"
OWNER = str(uuid.uuid4())
Publish = Callable[[asyncpg.Connection, int], Awaitable[None]]


def _payload(n: int) -> str:
    return json.dumps({"phase": "burst", "n": n, "sent": time.monotonic()})


async def notify(conn: asyncpg.Connection, n: int) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _payload(n))


async def insert(conn: asyncpg.Connection, n: int) -> None:
    await conn.fetchval(INSERT, "test", OWNER, _payload(n))


async def insert_notify(conn: asyncpg.Connection, n: int) -> None:
    cursor = await conn.fetchval(INSERT, "test", OWNER, _payload(n))
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(cursor))


async def rate(pool: asyncpg.Pool, publish: Publish) -> float:
    """Events/s of BURST events from PUBLISHERS connections at once."""
    numbers = iter(range(BURST))

    async def publisher() -> None:
        async with pool.acquire() as conn:
            for n in numbers:
                await publish(conn, n)

    start = time.monotonic()
    await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
    return BURST / (time.monotonic() - start)


async def main() -> None:
    name = f"enc_floor_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(
            _dsn(POSTGRES_URL, name), min_size=PUBLISHERS, max_size=PUBLISHERS
        )
        listener = await asyncpg.connect(_dsn(POSTGRES_URL, name))
        heard = [0]
        await listener.add_listener(CHANNEL, lambda *_: heard.__setitem__(0, heard[0] + 1))
        try:
            await pool.execute(TABLE)
            ways: dict[str, Publish] = {
                "notify": notify, "insert": insert, "insert_notify": insert_notify
            }  # fmt: skip
            rates: dict[str, list[float]] = {way: [] for way in ways}
            for _ in range(3):  # interleaved rounds: the load moves the figures
                for way, publish in ways.items():
                    rates[way].append(await rate(pool, publish))
        finally:
            await listener.close()
            await pool.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    best = {way: max(figures) for way, figures in rates.items()}
    print(json.dumps({
        "bench": "events_floor", "value": round(best["insert_notify"], 1),
        "reference": round(best["notify"], 1),
        "ratio": round(best["insert_notify"] / best["notify"], 3), "unit": "events/s",
        "insert": round(best["insert"], 1), "publishers": PUBLISHERS, "events": BURST,
        "heard": heard[0],
        "rounds": {way: [round(x, 1) for x in figures] for way, figures in rates.items()},
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
