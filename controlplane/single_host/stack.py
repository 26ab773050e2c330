"""`encedeus up`: a control plane on the embedded SQLite database and a local Skyhook
agent, enrolled automatically, on one machine.

The control plane runs in this process; the agent runs as a child process
(`skyhook --config <data_dir>/agent.hcl`), so neither program imports the other. The
first run creates an admin account and registers the local node as `POST /v1/nodes`
does; the join token goes into the agent's config and the agent enrols itself like
any other (`agent/enrolment.py`), keeping its identity in `agent/node.json`. `up.json`
(0600) keeps the node's id and the admin credentials; later runs reuse them. Stopping
(SIGINT/SIGTERM) stops the agent first, then the control plane; containers keep
running and the agent re-attaches to them next time.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiohttp
from aiohttp import web

from common.cancellation import cancel_and_wait
from common.host_address import is_wildcard, primary_address
from common.private_files import write_private_file
from common.subprocesses import DEVNULL, spawn, stop_process
from controlplane.accounts import create_user
from controlplane.api.errors import Conflict
from controlplane.api.nodes import CreatedNode, CreateNode, register_node
from controlplane.app import MAX_REQUEST_LINE, build_app
from controlplane.config import ControlPlaneConfig
from controlplane.single_host.addresses import UpAddresses, ui_origins, up_addresses
from controlplane.single_host.state import (
    AdminCredentials,
    UpState,
    agent_config_text,
    agent_node_file,
    choose_agent_ports,
    duplicated_ports,
    load_state,
    new_admin,
    save_state,
)
from controlplane.state import CONFIG, DATABASE, SERVER_KEYS

T = TypeVar("T")
AGENT_STOP_TIMEOUT = 20.0
NODE_READY_TIMEOUT = 60.0


class UpError(RuntimeError):
    """`up` cannot continue; the message says why."""


@dataclass(slots=True)
class UpOptions:
    """How to run the single-host stack."""

    data_dir: Path
    host: str = "127.0.0.1"
    advertise_host: str = ""  # how other machines reach this one (browsers: the UI, console)
    port: int = 3000
    port_range: tuple[int, int] = (30000, 30999)
    agent_labels: dict[str, str] = field(default_factory=dict)
    prefer_default_ports: bool = True
    base_config: ControlPlaneConfig | None = None
    client_command: str = "encedeus"  # how the banner tells to run the client


def controlplane_config(options: UpOptions, ingress_port: int = 0) -> ControlPlaneConfig:
    """The control plane's settings: the embedded database in the data directory; apps
    at `http://<app>.localhost:<ingress_port>/` (the local agent's ingress) unless
    the base config names a domain suffix of its own."""
    base = options.base_config or ControlPlaneConfig()
    update: dict[str, Any] = {
        "listen_address": options.host,
        "port": options.port,
        "data_dir": options.data_dir / "controlplane",
        "database_url": "",
    }
    if not base.domain_suffix and ingress_port:
        # Browsers and curl resolve *.localhost to loopback without any DNS.
        update.update(
            domain_suffix="localhost", ingress_tls="off", ingress_public_port=ingress_port
        )
    return base.model_copy(update=update)


def agent_command(config_path: Path) -> list[str]:
    """The `skyhook` next to this interpreter, else the agent module."""
    script = Path(sys.executable).with_name("skyhook")
    if script.exists():
        return [str(script), "--config", str(config_path)]
    return [sys.executable, "-m", "agent.cli", "--config", str(config_path)]


async def ensure_admin(app: web.Application, state: UpState) -> AdminCredentials:
    """The admin `up` made on its first run, creating it now if there is none."""
    if state.admin is not None:
        return state.admin
    admin = new_admin()
    try:
        await _create_admin(app, admin)
    except Conflict:
        # The database outlived up.json: make a fresh admin beside the old one.
        suffix = secrets.token_hex(3)
        admin = AdminCredentials(f"admin-{suffix}", f"admin-{suffix}@example.com", admin.password)
        await _create_admin(app, admin)
    state.admin = admin
    return admin


async def _create_admin(app: web.Application, admin: AdminCredentials) -> None:
    await create_user(
        app[DATABASE],
        username=admin.username,
        email=admin.email,
        password=admin.password,
        quota=app[CONFIG].default_quota,
        admin=True,
    )


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: dict[str, Any], token: str = ""
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def register_local_node(app: web.Application, port_range: tuple[int, int]) -> CreatedNode:
    """The node `local`, registered the way `POST /v1/nodes` registers every node:
    pending, with a one-time join token."""
    body = CreateNode(name="local", port_range_start=port_range[0], port_range_end=port_range[1])
    try:
        return await register_node(app[DATABASE], app[SERVER_KEYS], body)
    except Conflict:
        # The database outlived up.json: a second local node beside the old one.
        renamed = body.model_copy(update={"name": f"local-{secrets.token_hex(3)}"})
        return await register_node(app[DATABASE], app[SERVER_KEYS], renamed)


async def wait_node_ready(base_url: str, admin: AdminCredentials, node_id: str) -> bool:
    """Poll the node until the control plane hears from its agent (or time runs out)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NODE_READY_TIMEOUT
    async with aiohttp.ClientSession() as session:
        _, login = await _call(
            session,
            "POST",
            f"{base_url}/v1/auth/login",
            {"username": admin.username, "password": admin.password},
        )
        headers = {"Authorization": f"Bearer {login.get('access_token', '')}"}
        while loop.time() < deadline:
            async with session.get(f"{base_url}/v1/nodes/{node_id}", headers=headers) as response:
                node = await response.json() if response.status == 200 else {}
                # Host stats come only from the agent's heartbeats in this process.
                if node.get("status") == "ready" and node.get("host_stats"):
                    return True
            await asyncio.sleep(0.5)
    return False


async def start_agent(command: list[str], log_path: Path) -> asyncio.subprocess.Process:
    """Start the agent with its output appended to `log_path`."""
    log_file = await asyncio.to_thread(log_path.open, "ab")
    try:
        # A session of its own: Ctrl-C reaches `up`, which then stops the agent in order.
        return await spawn(
            *command, stdin=DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True
        )
    finally:
        log_file.close()


async def stop_agent(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after the timeout."""
    await stop_process(process, signal.SIGTERM, AGENT_STOP_TIMEOUT)


def banner(
    addresses: UpAddresses,
    admin: AdminCredentials,
    data_dir: Path,
    state: UpState,
    ready: bool,
    client: str = "encedeus",
) -> str:
    """What a newcomer needs to see (`client`: the command that runs the client)."""
    node_id, sftp_port = state.node_id, state.agent_ports.get("sftp", 2022)
    node_state = "ready" if ready else "not ready yet (see the agent log)"
    url = addresses.local_url
    return (
        "\nEncedeus is running.\n"
        f"  Web UI: {addresses.public_url}/\n"
        f"  Control plane: {url}\n"
        f"  Admin: {admin.username} / {admin.password}\n"
        f"  Credentials file: {data_dir / 'up.json'}\n"
        f"  Local node: {node_id} ({node_state}); agent log: {data_dir / 'agent.log'}\n"
        f"  SFTP: sftp -P {sftp_port} <username>.<first 8 characters of a server id>@127.0.0.1\n"
        f"  Apps: http://<app>.localhost:{state.agent_ports.get('ingress', 8080)}/ (ingress)\n"
        "\nNext:\n"
        f"  {client} login --url {url} {admin.username}\n"
        f'  {client} deploy encedeus/busybox:latest --command "sleep 3600"\n'
        f"  {client} ls\n"
        "\nPress Ctrl-C to stop.\n"
    )


async def run_up(options: UpOptions, stop: asyncio.Event, out: TextIO) -> int:
    """Run the stack until `stop` is set or the agent exits; the exit code."""
    data_dir = options.data_dir
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
    state = await asyncio.to_thread(load_state, data_dir)
    state.agent_ports = choose_agent_ports(
        state.agent_ports, prefer_defaults=options.prefer_default_ports
    )
    config = controlplane_config(options, state.agent_ports["ingress"])
    runner = web.AppRunner(
        build_app(config), shutdown_timeout=5, access_log=None, max_line_size=MAX_REQUEST_LINE
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        port = runner.addresses[0][1]
        wildcard = is_wildcard(options.host) and not options.advertise_host
        primary = await asyncio.to_thread(primary_address) if wildcard else None
        addresses = up_addresses(
            options.host, options.advertise_host, (port, state.agent_ports["http"]), primary
        )
        admin = await ensure_admin(runner.app, state)
        if duplicated := duplicated_ports(state.agent_ports):
            raise UpError(
                f"{data_dir / 'up.json'} gives the agent's {', '.join(duplicated)} listener "
                "a port another listener has; give each of agent_ports its own port"
            )
        await _ensure_join_token(runner.app, options, state)
        await asyncio.to_thread(save_state, data_dir, state)
        return await _run_agent(options, state, addresses, admin, stop, out)
    finally:
        await runner.cleanup()


async def _ensure_join_token(app: web.Application, options: UpOptions, state: UpState) -> None:
    """Register the local node unless its agent has an identity (or will enrol with a
    token a previous run got); the agent enrols itself with the token."""
    enrolled = await asyncio.to_thread(agent_node_file(options.data_dir).exists)
    if enrolled or state.node_secret:
        state.join_token = ""
    elif not state.join_token:
        node = await register_local_node(app, options.port_range)
        state.node_id, state.join_token = str(node.id), node.join_token


async def _run_agent(
    options: UpOptions,
    state: UpState,
    addresses: UpAddresses,
    admin: AdminCredentials,
    stop: asyncio.Event,
    out: TextIO,
) -> int:
    data_dir = options.data_dir
    url = addresses.local_url
    config_path = data_dir / "agent.hcl"
    text = agent_config_text(
        data_dir=data_dir / "agent",
        node_file=agent_node_file(data_dir),
        join_token=state.join_token,
        legacy_identity=(state.node_id, state.node_secret) if state.node_secret else None,
        controlplane_url=url,
        ports=state.agent_ports,
        port_range=options.port_range,
        labels=options.agent_labels,
        ui_origins=ui_origins(url, addresses.public_url),
        http_host=addresses.agent_http_host,
        http_public_url=addresses.agent_http_url,
    )
    await asyncio.to_thread(write_private_file, config_path, text)
    agent = await start_agent(agent_command(config_path), data_dir / "agent.log")
    try:
        ready = await _unless_interrupted(agent, stop, wait_node_ready(url, admin, state.node_id))
        if ready and state.join_token:
            state.join_token = ""  # spent: the agent has enrolled
            await asyncio.to_thread(save_state, data_dir, state)
        if ready is not None:
            out.write(banner(addresses, admin, data_dir, state, ready, options.client_command))
            out.flush()
            await _unless_interrupted(agent, stop, stop.wait())
        if agent.returncode is not None and not stop.is_set():
            out.write(f"The agent exited ({agent.returncode}); see {data_dir / 'agent.log'}\n")
            return 1
        out.write("Stopping...\n")
        return 0
    finally:
        await stop_agent(agent)


async def _unless_interrupted(
    agent: asyncio.subprocess.Process, stop: asyncio.Event, work: Coroutine[Any, Any, T]
) -> T | None:
    """`work`'s result, or None when the agent exits or `stop` is set first (`work` is
    then cancelled)."""
    job = asyncio.create_task(work)
    waiters = {job, asyncio.create_task(agent.wait()), asyncio.create_task(stop.wait())}
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        if not waiter.done():
            await cancel_and_wait(waiter)
    return job.result() if job.done() and not job.cancelled() else None
