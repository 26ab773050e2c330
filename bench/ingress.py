"""Throughput and tail latency through the ingress.

`value`: requests/s of `GET /` on a busybox httpd container (the local test image)
through this project's ingress — the agent's Caddy (`agent/ingress/`) configured with
a one-route table — driven by `wrk` with 50 connections. `reference`: the same load
straight to the container's published port, in the same run. Each runs ROUNDS
times, alternating; the best round of each counts. `ratio` = value / reference;
`p99_added_ms` = the ingress's p99 minus the direct p99.
Goals: ratio >= 0.7 and p99_added_ms <= 2.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.ingress.caddy import CaddyProxy
from agent.ingress.caddy_config import CaddySettings
from common.ports import free_ports
from protos import agent_pb2 as pb

CONNECTIONS = 50
THREADS = 2
DURATION = "6s"
ROUNDS = 2
IMAGE = "encedeus/busybox:latest"
HOST = "bench.localhost"
PAGE = "x" * 1024  # a 1 KiB page


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(wrk: str, url: str, duration: str, host: str = "") -> tuple[float, float]:
    """(requests/s, p99 seconds) of one wrk run; refuses runs with non-2xx answers."""
    headers = ["-H", f"Host: {host}"] if host else []
    result = subprocess.run(
        [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}", "--latency", *headers, url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = result.stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw non-2xx answers:\n{out}")
    if "Socket errors" in out:
        # Timeouts under a loaded 2-core machine are reported, not fatal.
        print(out, file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    assert p99, out
    return rps, _seconds(p99.group(1), p99.group(2))


def start_container(port: int) -> str:
    script = f"echo {PAGE} > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"
    return subprocess.run(
        ["docker", "run", "-d", "--rm", "--label", "encedeus.bench=ingress",
         "-p", f"127.0.0.1:{port}:8080", IMAGE, "sh", "-c", script],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def wait_ok(url: str, host: str = "") -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200")


async def measure(wrk: str, root: Path) -> dict[str, object]:
    direct_port, http_port, https_port = free_ports(3)
    container = await asyncio.to_thread(start_container, direct_port)
    settings = CaddySettings(
        f"unix/{root / 'admin.sock'}", http_port, https_port, str(root / "tls"), "127.0.0.1"
    )
    proxy = CaddyProxy(shutil.which("caddy") or "caddy", settings, root)
    running = asyncio.create_task(proxy.run())
    try:
        await asyncio.wait_for(proxy.ready.wait(), 15)
        upstream = pb.Upstream(address=f"127.0.0.1:{direct_port}")
        route = pb.Route(id="bench", hosts=[HOST], upstreams=[upstream])
        await proxy.apply(pb.RouteTable(version=1, routes=[route]))
        direct, through = f"http://127.0.0.1:{direct_port}/", f"http://127.0.0.1:{http_port}/"
        await asyncio.to_thread(wait_ok, direct)
        await asyncio.to_thread(wait_ok, through, HOST)
        best_direct, best_ingress = (0.0, 0.0), (0.0, 0.0)
        for _ in range(ROUNDS):
            d = await asyncio.to_thread(run_wrk, wrk, direct, DURATION)
            i = await asyncio.to_thread(run_wrk, wrk, through, DURATION, HOST)
            best_direct = max(best_direct, d)
            best_ingress = max(best_ingress, i)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await asyncio.to_thread(
            subprocess.run, ["docker", "rm", "-f", container], capture_output=True, check=False
        )
    return {
        "bench": "ingress_throughput",
        "value": round(best_ingress[0], 1),
        "reference": round(best_direct[0], 1),
        "ratio": round(best_ingress[0] / best_direct[0], 3),
        "unit": "requests/s",
        "p99_ms": round(best_ingress[1] * 1000, 2),
        "reference_p99_ms": round(best_direct[1] * 1000, 2),
        "p99_added_ms": round((best_ingress[1] - best_direct[1]) * 1000, 2),
        "connections": CONNECTIONS,
    }


def main() -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (scripts/setup-system.sh installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as root:
        result = asyncio.run(measure(wrk, Path(root)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
