"""Throughput and tail latency of the REST API's authenticated hot path.

`value`: requests/s of `GET /v1/user/profile` with an API key on a control plane
(`encedeus controlplane`, embedded SQLite, one process), driven by `wrk` with 100
connections. `reference`: the same load on a bare aiohttp handler answering a
similar fixed JSON body, in its own process, in the same run. The two alternate for
ROUNDS rounds and the best round of each counts. `ratio` = value / reference;
`p99_ms` is the control plane's 99th percentile latency in its best round (at
saturation: 100 connections always busy, so mostly queueing).

Then both servers get the same fixed request rate, half the control plane's best
saturated rate, from bench/fixed_rate.py (an open-loop generator in its own
process; latency counted from each request's due time): `fixed_p99_ms` is the
control plane's 99th percentile there, `reference_fixed_p99_ms` the bare handler's.
Goals: ratio >= 0.7 and fixed_p99_ms < 20.

`cpu_us` / `reference_cpu_us`: each server process's CPU time (user + system, from
/proc) per request answered in its `wrk` rounds, the lowest round of each;
`cpu_ratio` = reference_cpu_us / cpu_us. On a machine shared with other work this
moves much less than requests/s, which follow whatever CPU share the servers get.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

CONNECTIONS = 100
THREADS = 2
DURATION = "8s"
ROUNDS = 2
WARMUP = "2s"
FIXED_RATE_SECONDS = 8.0
FIXED_RATE = Path(__file__).with_name("fixed_rate.py")
JWT_SECRET = "bench-secret-0123456789abcdef"  # noqa: S105 (throwaway server)

BARE_SERVER = """
import json, sys
from aiohttp import web
BODY = json.dumps({"id": "8d0f8c56-8a2e-4f1e-9a53-0c0b2f8f9f52", "username": "bench",
    "email": "bench@example.com", "is_admin": True, "is_active": True,
    "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
    "last_login": "2026-01-01T00:00:00Z"})
async def profile(request):
    return web.Response(text=BODY, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/user/profile", profile)
runner = web.AppRunner(app, access_log=None)
import asyncio
async def main():
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"listening 127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    found = shutil.which("wrk")
    assert found, "wrk not installed"
    return found


def wait_for_address(stream: IO[str], marker: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if marker in line:
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert match, line
            return f"http://127.0.0.1:{match.group(1)}"
    raise RuntimeError(f"server did not report {marker!r}")


def post_json(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 (loopback http only)
        url, json.dumps(body).encode(), headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        result: dict[str, Any] = json.load(response)
        return result


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(wrk: str, url: str, token: str, duration: str) -> tuple[float, float, int]:
    """(requests/s, p99 seconds, requests) of one wrk run; refuses non-2xx answers."""
    result = subprocess.run(
        [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}", "--latency",
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = result.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    assert p99, out
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, _seconds(p99.group(1), p99.group(2)), count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], env: dict[str, str], marker: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)  # fmt: skip
    assert process.stdout is not None
    base = wait_for_address(process.stdout, marker)
    # Keep draining the log so a full pipe never stalls the server.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, base


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(name: str, wrk: str, url: str, token: str, pid: int) -> tuple[float, float, float]:
    """(requests/s, p99 seconds, server CPU µs per request) of one round."""
    run_wrk(wrk, url, token, WARMUP)
    before = cpu_seconds(pid)
    rps, p99, count = run_wrk(wrk, url, token, DURATION)
    cpu_us = (cpu_seconds(pid) - before) / count * 1e6
    print(f"{name}: {rps:.0f} req/s, p99 {p99 * 1000:.1f} ms, {cpu_us:.1f} µs CPU/request "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    return rps, p99, cpu_us


def at_fixed_rate(name: str, url: str, token: str, rate: float) -> dict[str, float]:
    """bench/fixed_rate.py's figures for `rate` requests/s on `url`."""
    result = subprocess.run(
        [sys.executable, str(FIXED_RATE), url, token, f"{rate:.1f}", str(FIXED_RATE_SECONDS)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    if figures["failures"]:
        raise RuntimeError(f"{name}: {figures['failures']} non-200 answers at a fixed rate")
    print(f"{name} at {rate:.0f} req/s: achieved {figures['achieved']:.0f}, p50 "
          f"{figures['p50_ms']} ms, p99 {figures['p99_ms']} ms", flush=True)  # fmt: skip
    return figures


def main() -> None:
    wrk = ensure_wrk()
    env = {**os.environ, "JWT_SECRET": JWT_SECRET}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.hcl"
        config.write_text(
            f'controlplane {{\n  data_dir = "{tmp}/data"\n  listen_address = "127.0.0.1"\n'
            "  port = 0\n}\n"
        )
        bare, bare_base = start([sys.executable, "-c", BARE_SERVER], env, "listening")
        ours, base = start(
            [sys.executable, "-m", "controlplane.cli", "controlplane", "--config", str(config)],
            env,
            "control_plane_listening",
        )
        try:
            signup = {"username": "bench", "email": "bench@example.com", "password": "bench-pass"}
            account = post_json(f"{base}/v1/auth/register", signup)
            key = post_json(f"{base}/v1/api-keys", {"name": "bench"}, account["access_token"])
            # Both servers are up together and measured in alternation, best round of
            # each, so that load from other processes on the machine hits both alike.
            bare_runs, our_runs = [], []
            for _ in range(ROUNDS):
                bare_url = f"{bare_base}/v1/user/profile"
                bare_runs.append(measure("bare aiohttp", wrk, bare_url, "x", bare.pid))
                our_url = f"{base}/v1/user/profile"
                our_runs.append(measure("control plane", wrk, our_url, key["key"], ours.pid))
            rate = max(our_runs)[0] / 2
            bare_fixed = at_fixed_rate("bare aiohttp", f"{bare_base}/v1/user/profile", "x", rate)
            our_fixed = at_fixed_rate("control plane", f"{base}/v1/user/profile", key["key"], rate)
        finally:
            stop(ours)
            stop(bare)
    bare_rps, bare_p99, _ = max(bare_runs)
    rps, p99, _ = max(our_runs)
    bare_cpu = min(run[2] for run in bare_runs)
    our_cpu = min(run[2] for run in our_runs)
    print(json.dumps({
        "bench": "api_throughput",
        "value": round(rps, 1),
        "reference": round(bare_rps, 1),
        "ratio": round(rps / bare_rps, 3),
        "unit": "req/s",
        "p99_ms": round(p99 * 1000, 2),
        "reference_p99_ms": round(bare_p99 * 1000, 2),
        "fixed_rate": round(rate, 1),
        "fixed_p99_ms": our_fixed["p99_ms"],
        "fixed_p50_ms": our_fixed["p50_ms"],
        "reference_fixed_p99_ms": bare_fixed["p99_ms"],
        "cpu_us": round(our_cpu, 1),
        "reference_cpu_us": round(bare_cpu, 1),
        "cpu_ratio": round(bare_cpu / our_cpu, 3),
        "load_average": round(os.getloadavg()[0], 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
