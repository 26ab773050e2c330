"""File API throughput: uploads and downloads through the agent's signed URLs against
Debian's nginx serving and accepting the same file.

The same client (`curl`, one connection, no options beyond the method) PUTs and GETs
the same file against both servers in the same run: a real Skyhook agent in this
process (its HTTP port, `PUT/GET /api/servers/{id}/files/upload|download?token=`), and
a private nginx (own config in a temp dir, `dav_methods PUT`, `sendfile on`, one
worker like the agent's one event loop) on another loopback port. Each transfer runs
`--rounds` times per server, alternating, and the best time counts; every upload is
checked byte for byte. The last line is the JSON result; ratio = agent / nginx
throughput for put and get (goal: both >= 0.8). `cpu_ms_per_mib` is each server's CPU
time per MiB moved (the median over the rounds; this process's threads for the agent,
the worker's for nginx): the figure load bends least, where best wall times on a busy
machine are luck.

    .venv/bin/python bench/file_transfer.py [--size-mib 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import filecmp
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from urllib.parse import urlencode

from agent.config import AgentConfig, NodeIdentity
from agent.daemon import running_agent
from agent.event_loop import run
from common.logging import configure_logging
from common.ports import free_ports
from common.subprocesses import spawn
from common.tokens import sign_server_token

SECRET = "bench-node-secret-0123456789abcdef"  # noqa: S105 (a throwaway agent)
NGINX_CONFIG = """
daemon off;
user root;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        client_max_body_size 0;
        location / {{ dav_methods PUT; }}
    }}
}}
"""


def _make_file(path: Path, size: int) -> None:
    with path.open("wb") as out, Path("/dev/urandom").open("rb") as random:
        block = random.read(8 * 1024 * 1024)
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            out.write(chunk)
            written += len(chunk)


def _cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` (schedstat: nanoseconds, not clock ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except OSError:
            continue  # a thread that ended meanwhile
    return total / 1e9


def _nginx_worker(root: Path) -> int:
    master = (root / "nginx.pid").read_text().strip()
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


@contextmanager
def _nginx(root: Path) -> Iterator[str]:
    (port,) = free_ports(1)
    (root / "www").mkdir(parents=True)
    config = root / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(root=root, port=port))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen([nginx, "-c", str(config)])
    try:
        _wait_listening(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(port: int) -> None:
    for _ in range(100):
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"],
            check=False,
        )
        if done.returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError("nginx did not start")


@asynccontextmanager
async def _agent(root: Path) -> AsyncIterator[tuple[str, Path, str]]:
    """A real agent on loopback; (base URL of one server's files, its directory, node)."""
    node_id = f"bench-{uuid.uuid4().hex[:8]}"
    config = AgentConfig.model_validate(
        {
            "data_dir": str(root / "skyhook"),
            "node_id": node_id,
            "node_secret": SECRET,
            "grpc": {"host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0},
            "sftp": {"host": "127.0.0.1", "port": 0},
            "port_range": {"start": 39000, "end": 39099},
        }
    )
    identity = NodeIdentity(node_id=node_id, node_secret=SECRET)
    async with running_agent(config, identity) as agent:
        server_id = str(uuid.uuid4())
        server_dir = root / "skyhook" / "volumes" / server_id
        server_dir.mkdir(parents=True)
        yield f"http://127.0.0.1:{agent.http.port}/api/servers/{server_id}", server_dir, node_id


def _signed(base: str, node_id: str, endpoint: str, scope: str, path: str) -> str:
    server_id = base.rsplit("/", 1)[1]
    token = sign_server_token(
        SECRET,
        node_id=node_id,
        user_id="bench",
        server_id=server_id,
        permissions=["file.read", "file.write"],
        scope="file-upload" if scope == "upload" else "file-download",
        details={"path": path},  # signed URLs are bound to one path
    )
    return f"{base}/files/{endpoint}?{urlencode({'path': path, 'token': token})}"


async def _curl(*args: str) -> float:
    started = time.perf_counter()
    process = await spawn("curl", "-sS", "-f", "-o", "/dev/null", *args)
    if await process.wait() != 0:
        raise RuntimeError(f"curl {' '.join(args)} failed")
    return time.perf_counter() - started


async def main(size_mib: int, rounds: int) -> dict[str, object]:
    size = size_mib * 1024 * 1024
    best: dict[tuple[str, str], float] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="file-bench-", dir="/var/tmp") as temp:
        root = Path(temp)
        source = root / "source.bin"
        await asyncio.to_thread(_make_file, source, size)
        async with _agent(root) as (base, server_dir, node_id):
            with _nginx(root / "nginx-root") as nginx:
                targets = {
                    "agent": (
                        _signed(base, node_id, "upload", "upload", "bench.bin"),
                        _signed(base, node_id, "download", "download", "bench.bin"),
                        server_dir / "bench.bin",
                    ),
                    "nginx": (
                        f"{nginx}/bench.bin",
                        f"{nginx}/bench.bin",
                        root / "nginx-root" / "www" / "bench.bin",
                    ),
                }
                pids = {"agent": os.getpid(), "nginx": _nginx_worker(root / "nginx-root")}
                for _ in range(rounds):
                    for name, (put_url, get_url, stored) in targets.items():
                        for op, args in (
                            ("put", ("-T", str(source), put_url)),
                            ("get", (get_url,)),
                        ):
                            used = _cpu_seconds(pids[name])
                            took = await _curl(*args)
                            used = _cpu_seconds(pids[name]) - used
                            best[(name, op)] = min(best.get((name, op), took), took)
                            cpu.setdefault((name, op), []).append(used)
                            if op == "put":
                                same = await asyncio.to_thread(filecmp.cmp, source, stored, False)
                                if not same:
                                    raise RuntimeError(f"{name} stored a different file")
    mb = size / 1e6
    ops = ("put", "get")
    return {
        "bench": "file_transfer",
        "value": {op: round(mb / best[("agent", op)], 1) for op in ops},
        "reference": {op: round(mb / best[("nginx", op)], 1) for op in ops},
        "ratio": {op: round(best[("nginx", op)] / best[("agent", op)], 3) for op in ops},
        "unit": "MB/s",
        "cpu_ms_per_mib": {
            name: {op: round(statistics.median(cpu[(name, op)]) * 1000 / size_mib, 3) for op in ops}
            for name in ("agent", "nginx")
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    configure_logging("warning")  # agent logs would drown the result line
    print(json.dumps(run(main(options.size_mib, options.rounds))))
