"""An open-loop HTTP load generator: GET `url` at a fixed rate, report the latencies.

    python bench/fixed_rate.py URL TOKEN RATE SECONDS

Request i is due at start + i / RATE whatever happened to the earlier ones, and its
latency counts from that due time (not from when a connection was free), so a
server that stalls is charged for the requests queued behind the stall (no
"coordinated omission"). Requests go over CONNECTIONS keep-alive HTTP/1.1
connections, one request at a time each, shared by WORKERS processes that each send
their share of the rate. The last line printed is one JSON object:
the rate asked for and achieved, p50/p99/max latency in ms, and non-200 answers.
`wrk` has no fixed-rate mode and Debian ships no `wrk2`, hence this generator; the
same one drives both servers of bench/api_throughput.py.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import time
from typing import Any
from urllib.parse import urlsplit

CONNECTIONS = 64
# Processes sharing the rate and the connections: one Python process alone cannot
# send several thousand requests/s on a loaded machine.
WORKERS = 2


class Connection(asyncio.Protocol):
    """One keep-alive connection; `get` sends the fixed request and waits for the
    whole answer (parsed by hand: the generator must cost far less than a server)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._answered: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._answered is None:
            return
        head = self._buffer[:end].lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        if len(self._buffer) >= end + 4 + length:
            self._buffer = self._buffer[end + 4 + length :]
            self._answered.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answered is not None and not self._answered.done():
            self._answered.set_exception(exc or ConnectionError("connection closed"))

    async def get(self, request: bytes) -> int:
        """Send `request`; the answer's status code."""
        assert self.transport is not None
        self._answered = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answered


async def run(url: str, token: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Drive `url` at `rate` requests/s for `seconds`: (latencies, non-200 answers)."""
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    request = (
        f"GET {where.path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(CONNECTIONS // WORKERS):
        _, connection = await loop.create_connection(Connection, host, port)
        idle.put_nowait(connection)
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

    tasks = set()
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    while not idle.empty():
        transport = idle.get_nowait().transport
        if transport is not None:
            transport.close()
    return latencies, failures


def summary(rate: float, seconds: float, latencies: list[float], failures: int) -> dict[str, float]:
    """The figures printed as the last line (see module doc)."""
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"rate": rate, "achieved": round(len(ordered) / seconds, 1), "p50_ms": at(0.5),
            "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2),
            "failures": failures}  # fmt: skip


def worker(url: str, token: str, rate: float, seconds: float, out: Any) -> None:
    """One generator process: its share of the rate; latencies and failures to `out`."""
    out.send(asyncio.run(run(url, token, rate, seconds)))
    out.close()


def main() -> None:
    if len(sys.argv) != 5:
        # `make bench` runs every bench/*.py: alone, this helper measures nothing.
        print(__doc__.splitlines()[2].strip())
        return
    url, token, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    pipes, processes = [], []
    for _ in range(WORKERS):
        receiver, sender = multiprocessing.Pipe(duplex=False)
        process = multiprocessing.Process(
            target=worker, args=(url, token, rate / WORKERS, seconds, sender)
        )
        process.start()
        pipes.append(receiver)
        processes.append(process)
    latencies: list[float] = []
    failures = 0
    started = time.perf_counter()
    for receiver in pipes:
        mine, failed = receiver.recv()
        latencies += mine
        failures += failed
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    print(json.dumps(summary(rate, elapsed, latencies, failures)), flush=True)


if __name__ == "__main__":
    main()
