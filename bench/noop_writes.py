"""The ceiling of `api_writes.py` on this machine: its 40 clients against no-op handlers.

`value`: requests/s of the same clients (`api_writes.drive_api`: 40 accounts, each
looping create → delete of an API key, a webhook and a deployment) against a bare
aiohttp server in its own process whose handlers answer a fixed JSON body with a
fresh id and touch no database. `reference`: the control plane's figure is not run
here (see `api_writes.py`); `cpu_ms_per_request` is the server process's CPU time
per request, to compare with the control plane's. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from api_throughput import stop, wait_for_address
from api_writes import SECONDS, drive_api, percentile


async def _created(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"id": str(uuid.uuid4()), "access_token": "t"}, status=201)


async def _deleted(request: web.Request) -> web.Response:
    return web.json_response({"message": "deleted"})


def serve() -> None:
    """The no-op server on a free loopback port; prints `listening <url>`."""
    app = web.Application()
    app.router.add_post("/v1/{kind}", _created)
    app.router.add_post("/v1/auth/register", _created)
    app.router.add_delete("/v1/{kind}/{id}", _deleted)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"listening http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    options = parser.parse_args()
    command = [sys.executable, __file__, "--serve"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base = wait_for_address(process.stdout, "listening")
        rate, latencies, _, cpu = await drive_api(base, options.seconds, process.pid)
    finally:
        stop(process)
    print(json.dumps({
        "bench": "noop_writes",
        "value": round(rate, 1),
        "reference": None,
        "ratio": None,
        "unit": "requests/s",
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "cpu_ms_per_request": round(cpu * 1000, 2),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
    }))  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:  # the server process
        serve()
    else:
        asyncio.run(main())
