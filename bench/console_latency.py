"""Console latency: a line written in the container until it reaches a console
WebSocket client, vs. the same line read with `docker logs -f`, in the same run.

The container echoes every line it reads from a FIFO in its data directory. The agent
runs in this process; the measuring side runs in a child process of its own (so that
it never waits for the agent's interpreter lock, as a browser would not): it writes
`L <n>` into the FIFO (a kernel pipe: the container's `echo` runs microseconds later)
and notes the time, while two readers, each in its own thread, take the agent's
console WebSocket (with the client's standard-library WebSocket) and `docker logs -f`
on the same container. Every line is timed on both (CLOCK_REALTIME of one machine).
`value` = p50 ms through the console socket, `reference` = p50 ms of `docker logs -f`,
`ratio` = value/reference (p99s are printed too). Goal: ratio <= 1.2. `added_p50` is the
median over lines of (console - docker logs) for the same line, in ms: what the agent's
path costs beyond Docker's own, less moved by the load swinging within a run than the
ratio of two medians (docs/performance.md, "Console latency").
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import docker

from agent.config import AgentConfig, NodeIdentity
from agent.daemon import RunningAgent, running_agent
from agent.event_loop import run
from agent.fleet.mounts import release_mounts_beneath
from common.subprocesses import spawn
from common.tokens import sign_server_token
from controlplane.client.websocket import connect
from protos import agent_pb2 as pb

IMAGE = "encedeus/busybox:latest"
LINES = 400
INTERVAL = 0.02
SECRET = "bench-secret-0123456789abcdef0123456789"  # noqa: S105 (a throwaway agent)
BENCH_LABEL = {"encedeus.bench": uuid.uuid4().hex[:10]}
ECHO_FIFO = 'exec 3<>/data/lines; while read l <&3; do echo "$l"; done'


class Arrivals:
    """When each line reached one reader (ns), and an event per line awaited."""

    def __init__(self) -> None:
        self.times: dict[str, int] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def note(self, line: str) -> None:
        now = time.time_ns()
        with self.changed:
            self.times.setdefault(line.strip(), now)
            self.changed.notify_all()

    def wait_for(self, line: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: line in self.times, timeout)


def read_console(url: str, token: str, arrivals: Arrivals, stop: threading.Event) -> None:
    ws = connect(url)
    ws.send_json({"event": "auth", "args": [token]})
    try:
        while not stop.is_set() and (message := ws.receive()) is not None:
            frame = message.json()
            if frame.get("event") == "console output":
                arrivals.note(frame["args"][0])
    finally:
        ws.close()


def read_docker_logs(process: subprocess.Popen[str], arrivals: Arrivals) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        arrivals.note(line)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), cuts[98]


def write_lines(fifo: int, readers: list[Arrivals]) -> dict[str, int]:
    """Warm both readers up, then write LINES lines; when each was written (ns)."""
    for n in range(50):
        os.write(fifo, f"warm {n}\n".encode())
        if all(r.wait_for(f"warm {n}", 0.5) for r in readers):
            break
    else:
        raise RuntimeError("a reader never saw the warm-up lines")
    written: dict[str, int] = {}
    for n in range(LINES):
        line = f"L {n}"
        written[line] = time.time_ns()
        os.write(fifo, f"{line}\n".encode())
        time.sleep(INTERVAL)
    last = f"L {LINES - 1}"
    for reader in readers:
        reader.wait_for(last, 10.0)
    return written


async def start_echo(agent: RunningAgent) -> tuple[pb.ServerSpec, Path]:
    spec = pb.ServerSpec(
        id=f"bench-{uuid.uuid4().hex[:10]}",
        image=IMAGE,
        command=["sh", "-c", ECHO_FIFO],
        network_disabled=True,
    )
    server = await agent.supervisor.create(spec, start=False)
    fifo = server.data_dir / "lines"
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)  # noqa: S103 (the container's user may not be ours; a throwaway dir)
    await agent.supervisor.start(spec.id)
    return spec, fifo


async def measure(agent: RunningAgent) -> tuple[list[float], list[float], list[float]]:
    """Start the echo server, then time its lines from a child process."""
    spec, fifo_path = await start_echo(agent)
    server = agent.supervisor.get(spec.id)
    token = sign_server_token(
        SECRET, node_id=agent.identity.node_id, user_id="bench", server_id=spec.id,
        permissions=["*"], scope="console", ttl_seconds=600,
    )  # fmt: skip
    url = f"ws://127.0.0.1:{agent.http.port}/api/servers/{spec.id}/ws"
    child = await spawn(
        sys.executable, __file__, "--measure", url, token, server.container_id, str(fifo_path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the measuring process failed ({child.returncode})")
    figures = json.loads(out.decode().splitlines()[-1])
    return figures["console"], figures["logs"], figures["added"]


def measure_from_here(url: str, token: str, container_id: str, fifo_path: str) -> None:
    """The child process: write the lines, read them on both paths, print the delays."""
    console, logs, stop = Arrivals(), Arrivals(), threading.Event()
    follower = subprocess.Popen(
        ["docker", "logs", "-f", container_id], stdout=subprocess.PIPE, text=True
    )
    threads = [
        threading.Thread(target=read_console, args=(url, token, console, stop), daemon=True),
        threading.Thread(target=read_docker_logs, args=(follower, logs), daemon=True),
    ]
    for thread in threads:
        thread.start()
    fifo = os.open(fifo_path, os.O_RDWR)  # read-write: never blocks for a reader
    try:
        written = write_lines(fifo, [console, logs])
    finally:
        os.close(fifo)
        stop.set()
        follower.kill()
        follower.wait()
    figures = {
        "console": delays(written, console),
        "logs": delays(written, logs),
        "added": added(written, console, logs),
    }
    print(json.dumps(figures))


def delays(written: dict[str, int], arrivals: Arrivals) -> list[float]:
    """Milliseconds from write to arrival of every line that arrived."""
    return [
        (arrivals.times[line] - at) / 1e6 for line, at in written.items() if line in arrivals.times
    ]


def added(written: dict[str, int], console: Arrivals, logs: Arrivals) -> list[float]:
    """Milliseconds the console took beyond `docker logs -f`, line by line."""
    return [
        (console.times[line] - logs.times[line]) / 1e6
        for line in written
        if line in console.times and line in logs.times
    ]


def remove_all(client: docker.DockerClient) -> None:
    filters: dict[str, str | list[str] | bool] = {
        "label": [f"{k}={v}" for k, v in BENCH_LABEL.items()]
    }
    for container in client.containers.list(all=True, filters=filters, ignore_removed=True):
        container.remove(force=True)


async def main() -> None:
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        config = AgentConfig.model_validate(
            {
                "data_dir": f"{tmp}/agent",
                "node_id": f"bench-{uuid.uuid4().hex[:8]}",
                "node_secret": SECRET,
                "grpc": {"host": "127.0.0.1", "port": 0},
                "http": {"host": "127.0.0.1", "port": 0},
                "sftp": {"host": "127.0.0.1", "port": 0},
                "labels": BENCH_LABEL,
            }
        )
        try:
            async with running_agent(config, NodeIdentity(config.node_id, SECRET)) as agent:
                console, logs, extra = await measure(agent)
        finally:
            await asyncio.to_thread(remove_all, client)
            client.close()
            # The agent's bind mount of the server's volume outlives it.
            await asyncio.to_thread(release_mounts_beneath, Path(tmp))
    if len(console) < LINES or len(logs) < LINES:
        raise SystemExit(f"lines lost: console {len(console)}, docker logs {len(logs)}")
    (c50, c99), (d50, d99) = percentiles(console), percentiles(logs)
    print(f"console socket  ms: p50 {c50:.2f}  p99 {c99:.2f}  ({len(console)} lines)")
    print(f"docker logs -f  ms: p50 {d50:.2f}  p99 {d99:.2f}  ({len(logs)} lines)")
    print(f"console - docker logs, line by line, ms: p50 {statistics.median(extra):.3f}")
    result = {
        "bench": "console_latency",
        "value": round(c50, 2),
        "reference": round(d50, 2),
        "ratio": round(c50 / d50, 3),
        "unit": "ms (p50, line written in the container -> console WebSocket client; "
        "reference: docker logs -f)",
        "value_p99": round(c99, 2),
        "reference_p99": round(d99, 2),
        "added_p50": round(statistics.median(extra), 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        measure_from_here(*sys.argv[2:6])
    else:
        run(main())
