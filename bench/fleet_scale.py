"""Fleet scale, simulated: one control plane on PostgreSQL against 200 simulated agents.

The control plane runs in a child process (this file with ``--serve``, default
settings: heartbeat 1000 ms, grace 20 s, reconcile interval 2 s) on a fresh PostgreSQL
database created for the run and dropped after it (the test suite's server,
ENCEDEUS_TEST_POSTGRES_URL). This process runs the simulated fleet
(bench/fleet_sim.py: one gRPC server, one 127.0.0.1 port per node, nodes told apart
by their secret) and drives the API. The nodes are enrolled through the real API
(POST /v1/nodes, then POST /v1/nodes/enroll with the join token), one admin account
submits DEPLOYMENTS x REPLICAS replicas (spread), and three figures are measured:

- converge_s: from the first POST /v1/deployments until every deployment's status
  is `running` (every replica reported running by its node). Goal 30 s.
- steady_cpu_percent: the control plane process's CPU (psutil, user + system, 100 =
  one core) over CPU_WINDOW seconds while the converged fleet only heartbeats.
  Goal 20 %.
- node_loss_s: LOST nodes go silent at once (streams end, calls refused); the time
  until every replica they held runs on another node and every deployment is
  `running` again. Goal: grace period + 5 s.

Each figure is printed as its own JSON line (bench fleet_scale.<figure>, reference =
the goal, ratio = value / goal); the LAST line combines them: value = ratio = the
worst of the three ratios (<= 1 means every goal is met), reference 1.0.
``--profile FILE`` writes a cProfile of the control plane process during the
heartbeat window to FILE (the CPU figure then includes the profiler's overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import psutil
from fleet_sim import FleetSimulator  # bench/ is the script's directory

from common.ports import pick_ports

POSTGRES_URL = os.environ.get(
    "ENCEDEUS_TEST_POSTGRES_URL",
    "postgresql+asyncpg://encedeus:encedeus@127.0.0.1:5432/encedeus_test",
)
NODES = int(os.environ.get("BENCH_NODES", "200"))
DEPLOYMENTS = int(os.environ.get("BENCH_DEPLOYMENTS", "100"))
REPLICAS = int(os.environ.get("BENCH_REPLICAS", "20"))
LOST = int(os.environ.get("BENCH_LOST_NODES", "10"))
CPU_WINDOW = float(os.environ.get("BENCH_CPU_WINDOW", "20"))
GRACE_SECONDS = 20.0  # the control plane's default node_grace_seconds
GOALS = {"converge_s": 30.0, "steady_cpu_percent": 20.0, "node_loss_s": GRACE_SECONDS + 5}
PROFILE_START, PROFILE_STOP = signal.SIGUSR1, signal.SIGUSR2  # to the child
PASSWORD = "fleet-bench-pass-1"  # noqa: S105 (a throwaway account)


def _dsn(database: str | None = None) -> str:
    base, _, name = POSTGRES_URL.replace("+asyncpg", "").rpartition("/")
    return f"{base}/{database or name}"


async def _admin_sql(sql: str) -> None:
    conn = await asyncpg.connect(_dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new empty PostgreSQL database (the app migrates it), dropped afterwards."""
    name = f"enc_fleet_{uuid.uuid4().hex[:12]}"
    await _admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rpartition("/")[0] + "/" + name
    finally:
        await _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- the control plane child ---------------------------------------------------


def serve_child(args: argparse.Namespace) -> None:
    """Run the control plane with default settings until SIGTERM (child process)."""
    from common.logging import configure_logging
    from controlplane.cli.serve import serve
    from controlplane.config import ControlPlaneConfig

    config = ControlPlaneConfig(
        listen_address="127.0.0.1",
        port=args.port,
        data_dir=Path(args.data_dir),
        database_url=args.database_url,
        auth_rate_limit=100_000,
        log_level=os.environ.get("BENCH_LOG_LEVEL", "warning"),
        # PostgreSQL: every control plane's secrets come from configuration.
        jwt_secret="bench-secret-0123456789abcdef",  # noqa: S106 (a throwaway server)
        secrets_key="YmVuY2gtc2VjcmV0cy1rZXktMDEyMzQ1Njc4OWFiY2Q=",
    )
    configure_logging(config.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        if args.profile:
            profiler = cProfile.Profile()
            loop.add_signal_handler(PROFILE_START, profiler.enable)
            loop.add_signal_handler(PROFILE_STOP, _stop_profile, profiler, args.profile)
        await serve(config, stop)

    asyncio.run(main())


def _stop_profile(profiler: cProfile.Profile, path: str) -> None:
    profiler.disable()
    profiler.dump_stats(path)


@contextlib.asynccontextmanager
async def control_plane(database_url: str, profile: str) -> AsyncIterator[tuple[str, int]]:
    """The child process serving the API; yields (base URL, pid)."""
    [port] = pick_ports([0])
    with tempfile.TemporaryDirectory() as data_dir:
        command = [sys.executable, __file__, "--serve", "--port", str(port)]
        command += ["--data-dir", data_dir, "--database-url", database_url]
        command += ["--profile", profile] if profile else []
        child = subprocess.Popen(command)
        base = f"http://127.0.0.1:{port}"
        try:
            await _wait_healthy(base, child)
            yield base, child.pid
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(child.wait, 120)
            except subprocess.TimeoutExpired:
                print("the control plane did not stop in 120 s: killed", file=sys.stderr)
                child.kill()
                await asyncio.to_thread(child.wait)


async def _wait_healthy(base: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"the control plane exited with {child.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError("the control plane did not become healthy")


# ---- the API -------------------------------------------------------------------


class Api:
    """A few calls on the control plane as one bearer."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base, self.token = http, base, ""

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.json(content_type=None)
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {body}")
            return body

    async def pages(self, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self.call("GET", f"{path}?limit=100&page={page}")
            items += body[key]
            if page >= body["pagination"]["total_pages"]:
                return items
            page += 1


async def _bounded(job: Callable[[int], Awaitable[None]], count: int, parallel: int) -> None:
    """job(0) ... job(count - 1), at most `parallel` at a time."""
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> None:
        async with gate:
            await job(index)

    await asyncio.gather(*(one(index) for index in range(count)))


async def enrol_fleet(api: Api, fleet: FleetSimulator) -> None:
    """Every simulated node registered and enrolled through the API."""

    async def enrol(index: int) -> None:
        node = fleet.nodes[index]
        created = await api.call("POST", "/v1/nodes", json={"name": node.name})
        body = {
            "join_token": created["join_token"],
            "grpc_address": node.address,
            "fingerprint": node.fingerprint(),
        }
        enrolled = await api.call("POST", "/v1/nodes/enroll", json=body)
        fleet.enrolled(node, enrolled["node_id"], enrolled["node_secret"])

    await _bounded(enrol, len(fleet.nodes), 8)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


async def _all_nodes_ready(api: Api) -> bool:
    nodes = await api.pages("/v1/nodes", "nodes")
    return len(nodes) == NODES and all(n["status"] == "ready" for n in nodes)


async def _all_running(api: Api) -> bool:
    deployments = await api.pages("/v1/deployments", "deployments")
    return len(deployments) == DEPLOYMENTS and all(d["status"] == "running" for d in deployments)


async def converge(api: Api, fleet: FleetSimulator) -> float:
    """Seconds from the first submission until every deployment is running."""
    body: dict[str, Any] = {
        "image": "encedeus/busybox:latest",
        "command": "sleep 3600",
        "replicas": REPLICAS,
        "resources": {"cpu": "100m", "memory": "128Mi"},
    }
    started = time.perf_counter()

    async def submit(n: int) -> None:
        await api.call("POST", "/v1/deployments", json={**body, "app_name": f"fleet-{n}"})

    await _bounded(submit, DEPLOYMENTS, 8)

    async def done() -> bool:
        return fleet.running() >= DEPLOYMENTS * REPLICAS and await _all_running(api)

    await _until(done, 300, "the deployments to run")
    return time.perf_counter() - started


async def steady_cpu(pid: int, profile: bool) -> float:
    """The control plane's CPU over CPU_WINDOW seconds, in % of one core (profiled
    when `profile`)."""
    process = psutil.Process(pid)
    if profile:
        process.send_signal(PROFILE_START)
    before, began = process.cpu_times(), time.perf_counter()
    await asyncio.sleep(CPU_WINDOW)
    after, elapsed = process.cpu_times(), time.perf_counter() - began
    if profile:
        process.send_signal(PROFILE_STOP)
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / elapsed


async def node_loss(api: Api, fleet: FleetSimulator) -> tuple[float, int]:
    """Seconds until the replicas of LOST silenced nodes run elsewhere; how many."""
    victims = [node for node in fleet.nodes if node.servers][:LOST]
    moved = sum(len(node.servers) for node in victims)
    started = time.perf_counter()
    fleet.silence(victims)

    async def done() -> bool:
        return fleet.running() >= DEPLOYMENTS * REPLICAS and await _all_running(api)

    await _until(done, GRACE_SECONDS + 120, "the lost replicas to move")
    return time.perf_counter() - started, moved


def _figure(name: str, value: float, unit: str, **extra: object) -> dict[str, object]:
    goal = GOALS[name]
    return {
        "bench": f"fleet_scale.{name}",
        "value": round(value, 3),
        "reference": goal,
        "ratio": round(value / goal, 3),
        "unit": unit,
        **extra,
    }


async def run(profile: str) -> None:
    async with (
        FleetSimulator(NODES) as fleet,
        fresh_database() as database_url,
        control_plane(database_url, profile) as (base, pid),
        aiohttp.ClientSession() as http,
    ):
        api = Api(http, base)
        account = {"username": "fleet", "email": "fleet@example.com", "password": PASSWORD}
        api.token = (await api.call("POST", "/v1/auth/register", json=account))["access_token"]
        began = time.perf_counter()
        await enrol_fleet(api, fleet)
        enrol_s = time.perf_counter() - began
        await _until(lambda: _all_nodes_ready(api), 120, "every node to be ready")
        converge_s = await converge(api, fleet)
        await asyncio.sleep(5)  # the last statuses and node rows settle
        cpu = await steady_cpu(pid, bool(profile))
        loss_s, moved = await node_loss(api, fleet)
    load = os.getloadavg()[0]
    figures = [
        _figure("converge_s", converge_s, "s", replicas=DEPLOYMENTS * REPLICAS, nodes=NODES),
        _figure("steady_cpu_percent", cpu, "% of a core", window_s=CPU_WINDOW),
        _figure("node_loss_s", loss_s, "s", lost_nodes=LOST, moved_replicas=moved),
    ]
    for figure in figures:
        print(json.dumps(figure))
    worst = max(float(str(f["ratio"])) for f in figures)
    summary: dict[str, object] = {
        "bench": "fleet_scale",
        "value": worst,
        "reference": 1.0,
        "ratio": worst,
        "unit": "x goal (worst figure)",
        "converge_s": round(converge_s, 2),
        "steady_cpu_percent": round(cpu, 1),
        "node_loss_s": round(loss_s, 2),
        "enrol_s": round(enrol_s, 2),
        "nodes": NODES,
        "replicas": DEPLOYMENTS * REPLICAS,
        "load1": round(load, 2),
    }
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile", default="", help="cProfile the control plane's heartbeat window into FILE"
    )
    args = parser.parse_args()
    if args.serve:
        serve_child(args)
    else:
        asyncio.run(run(str(Path(args.profile).resolve()) if args.profile else ""))


if __name__ == "__main__":
    main()
