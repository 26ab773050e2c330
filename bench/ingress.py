"""Throughput and tail latency through the ingress.

`value`: requests/s of `GET /` (a 1 KiB page) on a web container through this
project's ingress — the agent's Caddy (`agent/ingress/`) configured with a one-route
table, exactly the config production gets: the upstream is the container's published
port on this node, which the agent dials at the container's own address
(`ingress_dials`; agent/ingress/local_upstreams.py) — driven by `wrk` with 50
connections. `reference`: the same load straight to the same container's published
port (through Docker's port proxy), in the same run.

Two backends, each measured on both paths:

- `keepalive` (the headline figure): a static file server that keeps connections
  alive, as real web apps do. It is `caddy file-server` in an image built here from
  `encedeus/busybox:latest` plus this host's `caddy` binary and the libraries it links
  (nothing pulled from a registry).
- `close`: busybox httpd, which closes every connection: every request costs a new
  connection on both paths.

Each path gets a warm-up run, then ROUNDS alternating runs; the best round of each
counts. `ratio` = value / reference; `p99_added_ms` = the ingress's p99 minus the
direct p99. The 1-minute load average before and after is part of the figure: the
machine is shared. Goals: ratio >= 0.7 and p99_added_ms <= 2.

`cpu_us_per_request`: CPU time (user + system) per request of each process over the
measured rounds of each path — the ingress Caddy, the backend, Docker's port proxy
(from /proc) and the client, wrk (from getrusage). It depends far less on how busy the
machine is than requests/s, and `cpu_ratio` (direct total / ingress path total) is
the ratio a host whose cores are all busy with this load would see.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.ingress.caddy import CaddyProxy
from agent.ingress.caddy_config import CaddySettings
from agent.ingress.local_upstreams import PublishedPort
from common.ports import free_ports
from protos import agent_pb2 as pb

CONNECTIONS = 50
THREADS = 2
DURATION = "5s"
WARM_UP = "2s"
ROUNDS = 3
BASE_IMAGE = "encedeus/busybox:latest"
KEEPALIVE_IMAGE = "encedeus/bench-keepalive:latest"
LABEL = "encedeus.bench=ingress"
HOST = "bench.localhost"
PAGE = "x" * 1024  # a 1 KiB page


@dataclass(frozen=True, slots=True)
class Backend:
    """A web container serving /tmp/index.html on port 8080."""

    name: str
    image: str
    server: str  # the shell command that serves /tmp on :8080


BACKENDS = (
    Backend("keepalive", KEEPALIVE_IMAGE, "exec caddy file-server --listen :8080 --root /tmp"),
    Backend("close", BASE_IMAGE, "exec httpd -f -p 8080 -h /tmp"),
)


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


@dataclass(frozen=True, slots=True)
class Run:
    """One wrk run: requests/s, p99 seconds, requests made, CPU ticks of each process
    (`client`: wrk itself)."""

    rps: float
    p99: float
    requests: int
    ticks: dict[str, float]


def children_ticks() -> float:
    """User + system clock ticks of this process's reaped children (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks of `pid` and of its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime


def run_wrk(
    wrk: str, url: str, duration: str, host: str = "", pids: dict[str, int] | None = None
) -> Run:
    """One wrk run, with the CPU ticks `pids` spent meanwhile; refuses runs with
    non-2xx answers."""
    before = {name: cpu_ticks(pid) for name, pid in (pids or {}).items()}
    client = children_ticks()
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
    ticks: dict[str, float] = {
        name: cpu_ticks(pid) - before[name] for name, pid in (pids or {}).items()
    }
    ticks["client"] = children_ticks() - client
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    assert p99, out
    return Run(rps, _seconds(p99.group(1), p99.group(2)), requests, ticks)


def _linked_files(binary: str) -> list[str]:
    """The shared libraries `binary` loads (ldd), and the loader itself."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return re.findall(r"(/\S+) \(0x", out)


def build_keepalive_image() -> None:
    """KEEPALIVE_IMAGE: the base image plus this host's caddy and its libraries."""
    caddy = shutil.which("caddy")
    if caddy is None:
        raise RuntimeError("caddy is not installed (scripts/setup-system.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="bench-keepalive-") as context:
        files = [caddy, *_linked_files(caddy)]
        lines = [f"FROM {BASE_IMAGE}"]
        for index, path in enumerate(files):
            shutil.copy(path, Path(context) / str(index))  # follows symlinks
            lines.append(f"COPY {index} {path}")
        Path(context, "Dockerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        subprocess.run(
            ["docker", "build", "-q", "--label", LABEL, "-t", KEEPALIVE_IMAGE, context],
            capture_output=True, text=True, check=True,
        )  # fmt: skip


def start_container(backend: Backend, port: int) -> str:
    script = f"echo {PAGE} > /tmp/index.html && {backend.server}"
    return subprocess.run(
        ["docker", "run", "-d", "--rm", "--label", LABEL,
         "-p", f"127.0.0.1:{port}:8080", backend.image, "sh", "-c", script],
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


def _per_request(runs: list[Run]) -> dict[str, float]:
    """CPU microseconds per request of each process (and of wrk) over `runs`."""
    requests = sum(run.requests for run in runs)
    tick = 1e6 / os.sysconf("SC_CLK_TCK")
    return {
        name: round(sum(run.ticks[name] for run in runs) * tick / requests, 1)
        for name in runs[0].ticks
    }


def compare(wrk: str, direct: str, through: str, pids: dict[str, int]) -> dict[str, object]:
    """Warm both paths up, then alternate ROUNDS runs of each; the best of each."""
    run_wrk(wrk, direct, WARM_UP)
    run_wrk(wrk, through, WARM_UP, HOST)
    direct_runs, ingress_runs = [], []
    for _ in range(ROUNDS):
        direct_runs.append(run_wrk(wrk, direct, DURATION, pids=pids))
        ingress_runs.append(run_wrk(wrk, through, DURATION, HOST, pids=pids))
    best_direct = max(direct_runs, key=lambda run: run.rps)
    best_ingress = max(ingress_runs, key=lambda run: run.rps)
    direct_cpu, ingress_cpu = _per_request(direct_runs), _per_request(ingress_runs)
    return {
        "value": round(best_ingress.rps, 1),
        "reference": round(best_direct.rps, 1),
        "ratio": round(best_ingress.rps / best_direct.rps, 3),
        "p99_ms": round(best_ingress.p99 * 1000, 2),
        "reference_p99_ms": round(best_direct.p99 * 1000, 2),
        "p99_added_ms": round((best_ingress.p99 - best_direct.p99) * 1000, 2),
        "cpu_us_per_request": {"direct": direct_cpu, "through_ingress": ingress_cpu},
        # The ratio a machine whose cores are all busy with this load would see.
        "cpu_ratio": round(sum(direct_cpu.values()) / sum(ingress_cpu.values()), 3),
    }


def container_ip(container: str) -> str:
    inspect = ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", container]
    return subprocess.run(inspect, capture_output=True, text=True, check=True).stdout.strip()


def server_pids(container: str, port: int, ingress: int) -> dict[str, int]:
    """The processes that serve a request: the ingress Caddy, the container's server,
    and Docker's port proxy for `port` (absent when Docker forwards in the kernel)."""
    inspect = ["docker", "inspect", "-f", "{{.State.Pid}}", container]
    backend = int(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
    pids = {"ingress": ingress, "backend": backend}
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"docker-proxy") and str(port).encode() in argv:
            pids["port_proxy"] = int(entry.name)
    return pids


async def measure(wrk: str, root: Path, backend: Backend) -> dict[str, object]:
    """One backend through a fresh ingress and straight to its published port."""
    direct_port, http_port, https_port = free_ports(3)
    container = await asyncio.to_thread(start_container, backend, direct_port)
    settings = CaddySettings(
        f"unix/{root / 'admin.sock'}", http_port, https_port, str(root / "tls"), "127.0.0.1"
    )
    # The container is this node's own, as the agent sees its servers: the ingress
    # dials its address on the bridge, as in production (agent/ingress/local_upstreams.py).
    address = await asyncio.to_thread(container_ip, container)
    local = [PublishedPort("127.0.0.1", direct_port, f"{address}:8080")]
    proxy = CaddyProxy(shutil.which("caddy") or "caddy", settings, root, lambda: local)
    running = asyncio.create_task(proxy.run())
    try:
        await asyncio.wait_for(proxy.ready.wait(), 15)
        upstream = pb.Upstream(address=f"127.0.0.1:{direct_port}")
        route = pb.Route(id="bench", hosts=[HOST], upstreams=[upstream])
        await proxy.apply(pb.RouteTable(version=1, routes=[route]))
        direct, through = f"http://127.0.0.1:{direct_port}/", f"http://127.0.0.1:{http_port}/"
        await asyncio.to_thread(wait_ok, direct)
        await asyncio.to_thread(wait_ok, through, HOST)
        assert proxy.process is not None
        pids = await asyncio.to_thread(server_pids, container, direct_port, proxy.process.pid)
        figures = await asyncio.to_thread(compare, wrk, direct, through, pids)
        figures["ingress_dials"] = proxy.dials.get(upstream.address, upstream.address)
        return figures
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await asyncio.to_thread(
            subprocess.run, ["docker", "rm", "-f", container], capture_output=True, check=False
        )


def main() -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (scripts/setup-system.sh installs it)", file=sys.stderr)
        return 1
    build_keepalive_image()
    load_before = os.getloadavg()[0]
    figures: dict[str, dict[str, object]] = {}
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory(prefix="bench-ingress-") as root:
            figures[backend.name] = asyncio.run(measure(wrk, Path(root), backend))
    result = {
        "bench": "ingress_throughput",
        **figures["keepalive"],
        "unit": "requests/s",
        "connections": CONNECTIONS,
        "backend": "keepalive",
        "close_backend": figures["close"],
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
