"""An open-loop HTTP load generator: GET `url` at a fixed rate, report the latencies.

    python bench/fixed_rate.py URL TOKEN RATE SECONDS

Request i is due at start + i / RATE whatever happened to the earlier ones, and its
latency counts from that due time (not from when a connection was free), so a
server that stalls is charged for the requests queued behind the stall (no
"coordinated omission"). Requests go over CONNECTIONS keep-alive HTTP/1.1
connections, one request at a time each. The last line printed is one JSON object:
the rate asked for and achieved, p50/p99/max latency in ms, and non-200 answers.
`wrk` has no fixed-rate mode and Debian ships no `wrk2`, hence this generator; the
same one drives both servers of bench/api_throughput.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

CONNECTIONS = 64


class Connection:
    """One keep-alive connection sending a fixed GET request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, request: bytes) -> int:
        """Send `request`, read the whole answer; its status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status


async def run(url: str, token: str, rate: float, seconds: float) -> dict[str, float]:
    """Drive `url` at `rate` requests/s for `seconds`; the figures (see module doc)."""
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    request = (
        f"GET {where.path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        idle.put_nowait(Connection(*await asyncio.open_connection(host, port)))
    latencies: list[float] = []
    failures = 0

    async def one(due: float) -> None:
        nonlocal failures
        connection = await idle.get()
        try:
            if await connection.get(request) != 200:
                failures += 1
        finally:
            idle.put_nowait(connection)
        latencies.append(time.perf_counter() - due)

    total = int(rate * seconds)
    tasks = set()
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().writer.close()
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"rate": rate, "achieved": round(len(ordered) / elapsed, 1), "p50_ms": at(0.5),
            "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2),
            "failures": failures}  # fmt: skip


def main() -> None:
    url, token, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(run(url, token, rate, seconds))), flush=True)


if __name__ == "__main__":
    main()
