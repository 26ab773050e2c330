"""A whole cluster as separate processes on loopback: one `encedeus controlplane` and
any number of `skyhook` agents (enrolled through the API), all on the local dockerd.

Every container the agents make carries this session's label and is removed at
teardown. Grace periods and intervals are short so the scenarios run in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from common.ports import free_ports
from controlplane.client.api import ApiClient
from tests.docker_support import labelled_containers, remove_labelled_containers
from tests.listeners import agent_listeners

BIN = Path(sys.executable).parent
SESSION_LABEL = ("encedeus.test", f"e2e-orch-{uuid.uuid4().hex[:12]}")
PASSWORD = "correct-horse-9"
AgentRunner = Literal["process", "container"]
CONTROLPLANE_SETTINGS = {
    "node_grace_seconds": 3,
    "heartbeat_interval_ms": 250,
    "reconcile_interval_seconds": 0.5,
    "restart_backoff_base_seconds": 0.5,
    "restart_backoff_cap_seconds": 2,
}


def _hcl(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_hcl(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + " ".join(f'"{k}" = {_hcl(v)}' for k, v in value.items()) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, block: str, values: dict[str, object]) -> Path:
    """An HCL file with one block; dict values become nested blocks."""
    lines = [f"{block} {{"]
    for key, value in values.items():
        if isinstance(value, dict) and key not in ("labels",):
            inner = " ".join(f"{k} = {_hcl(v)}" for k, v in value.items())
            lines.append(f"  {key} {{\n    {inner}\n  }}")
        else:
            lines.append(f"  {key} = {_hcl(value)}")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Process:
    """A child process with its log file; restartable with the same command."""

    command: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("DATABASE_URL", None)
        self.process = subprocess.Popen(self.command, stdout=handle, stderr=handle, env=env)
        handle.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash or power loss."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP: alive but silent, as a hung host; its connections stay open."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Cluster:
    """The processes and the admin's credentials."""

    root: Path
    url: str
    controlplane: Process
    agents: dict[str, Process] = field(default_factory=dict)
    node_ids: dict[str, str] = field(default_factory=dict)
    token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def request(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, headers=self.headers, **kw) as response,
        ):
            body = await response.json(content_type=None)
            assert response.status == status, (method, path, response.status, body)
            return body


def start_controlplane(root: Path, extra: dict[str, object] | None = None) -> Cluster:
    """Write the control plane's config (`extra` settings added) and start it (not
    yet waited for)."""
    [port] = free_ports(1)
    values: dict[str, object] = {
        "listen_address": "127.0.0.1",
        "port": port,
        "data_dir": str(root / "cp"),
        "jwt_secret": "e2e-secret-0123456789abcdef",
        "auth_rate_limit": 1000,
        **CONTROLPLANE_SETTINGS,
        **(extra or {}),
    }
    config = write_config(root / "controlplane.hcl", "controlplane", values)
    process = Process([str(BIN / "encedeus"), "controlplane", "--config", str(config)],
                      root / "controlplane.log")  # fmt: skip
    process.start()
    return Cluster(root=root, url=f"http://127.0.0.1:{port}", controlplane=process)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.2
) -> Any:
    """Poll until `check` gives a truthy value (connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, AssertionError):
            last = await check()
            if last:
                return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not reached within {timeout}s; last: {last!r}")


async def wait_healthy(cluster: Cluster) -> None:
    async def healthy() -> bool:
        async with aiohttp.ClientSession() as session, session.get(cluster.url + "/health") as r:
            return r.status == 200

    try:
        await eventually(healthy, timeout=60)
    except AssertionError:
        raise AssertionError(cluster.controlplane.output()) from None


async def sign_in_admin(cluster: Cluster) -> None:
    body = {"username": "admin", "email": "admin@example.com", "password": PASSWORD}
    async with (
        aiohttp.ClientSession() as session,
        session.post(cluster.url + "/v1/auth/register", json=body) as response,
    ):
        answer = await response.json()
        assert response.status == 201, answer
        cluster.token = answer["access_token"]


async def add_agent(
    cluster: Cluster,
    name: str,
    port_range: tuple[int, int],
    extra: dict[str, object] | None = None,
    runner: AgentRunner = "process",
) -> None:
    """Create the node, write the agent's config (`extra` settings added) with its join
    token, start it: as a `skyhook` process, or (`runner="container"`) as a container
    of the agent's own image (tests/e2e/agent_container.py)."""
    created = await cluster.request("POST", "/v1/nodes", 201, json={"name": name})
    values: dict[str, object] = {
        "data_dir": str(cluster.root / name),
        "controlplane_url": cluster.url,
        "join_token": created["join_token"],
        **agent_listeners(),
        "port_range": {"start": port_range[0], "end": port_range[1]},
        "labels": {SESSION_LABEL[0]: SESSION_LABEL[1]},
        "watchdog": False,
        **(extra or {}),
    }
    config = write_config(cluster.root / f"{name}.hcl", "agent", values)
    process = Process([str(BIN / "skyhook"), "--config", str(config)],
                      cluster.root / f"{name}.log")  # fmt: skip
    if runner == "container":
        from tests.e2e.agent_container import AgentContainer  # it imports this module

        process = AgentContainer(
            command=[], log=cluster.root / f"{name}.log", name=f"skyhook-{SESSION_LABEL[1]}-{name}",
            config=config, data_dir=cluster.root / name, labels=dict([SESSION_LABEL]),
        )  # fmt: skip
    process.start()
    cluster.agents[name] = process
    cluster.node_ids[name] = created["id"]
    await wait_node_status(cluster, name, "ready")


async def wait_node_status(cluster: Cluster, name: str, wanted: str, timeout: float = 60) -> None:
    """Until the API reports the node `name` as `wanted` (after at least one heartbeat);
    the agent's log is the failure message."""
    node_id = cluster.node_ids[name]

    async def reached() -> bool:
        node = await cluster.request("GET", f"/v1/nodes/{node_id}")
        return bool(node["status"] == wanted and node["last_seen"])

    try:
        await eventually(reached, timeout=timeout)
    except AssertionError:
        raise AssertionError(cluster.agents[name].output()) from None


def session_labels(labels: dict[str, str] | None = None) -> dict[str, str]:
    """`labels` plus this session's label."""
    return {SESSION_LABEL[0]: SESSION_LABEL[1], **(labels or {})}


def session_containers(labels: dict[str, str] | None = None, running: bool = True) -> list[Any]:
    """This session's containers carrying `labels`."""
    return labelled_containers(session_labels(labels), running_only=running)


def remove_session_containers() -> None:
    remove_labelled_containers(session_labels())


def wait_finished(client: ApiClient, task_id: str, timeout: float = 60) -> dict[str, Any]:
    """The task's status once it is Succeeded or Failed."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = client.call("GET", f"/v1/tasks/{task_id}/status")
        if status["status"] in ("Succeeded", "Failed"):
            return status
        time.sleep(0.3)
    raise AssertionError(f"task did not finish: {status}")


def task_logs(client: ApiClient, task_id: str, **query: Any) -> str:
    """The task's whole log answer (`tail`, `follow` as query parameters)."""
    return b"".join(client.stream(f"/v1/tasks/{task_id}/logs", query=query)).decode()
