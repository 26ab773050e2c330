"""This node's Caddy: a child process of the agent, configured through its admin API.

The admin API has no authentication of its own, so it listens only on a unix socket
in the agent's data directory (mode 0700 directory). Caddy keeps nothing but TLS
state (certificates, account keys) in `storage_dir`: its config is never persisted,
so a Caddy that restarts comes back with an empty table (version 0), which the
control plane sees in the next heartbeat and re-applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

from agent.ingress.caddy_config import CaddySettings, caddy_config
from agent.ingress.local_upstreams import PublishedPort, direct_dials
from agent.ingress.port_sharing import others_listening
from common.logging import get_logger
from common.subprocesses import DEVNULL, spawn, stop_process
from protos import agent_pb2 as pb

log = get_logger(__name__)
READY_TIMEOUT = 15.0
RESTART_DELAY_MAX = 5.0
# Go's collector at its default (GOGC=100) runs every ~4 MB allocated: about every
# 200 proxied requests, a tenth or so of Caddy's CPU per request (bench/ingress.py).
# 400 lets the heap grow to five times what is live (a few MB for a small table);
# the soft limit brings collections back well before a large table's heap could
# grow out of bounds. The agent's own GOGC / GOMEMLIMIT, when set, are passed on.
GO_RUNTIME_ENV = {"GOGC": "400", "GOMEMLIMIT": "512MiB"}


class IngressUnavailable(Exception):
    """Caddy is not running or did not take a config."""


class CaddyProxy:
    """Owns one Caddy process. :meth:`run` starts it and restarts it whenever it dies
    (until cancelled, which stops it); :meth:`apply` replaces the routing table.
    `routes_version` is the version of the table Caddy serves right now.

    Upstreams that are `local_ports()` of this node are dialled at their container's
    address; :meth:`refresh` renders the table again when those changed."""

    def __init__(
        self,
        binary: str,
        settings: CaddySettings,
        run_dir: Path,
        local_ports: Callable[[], Iterable[PublishedPort]] = tuple,
    ) -> None:
        self.binary, self.settings, self.run_dir = binary, settings, run_dir
        self.local_ports = local_ports
        self.routes_version = 0
        # What Caddy serves: the table and the container addresses it dials for it.
        self._table: pb.RouteTable | None = None
        self._dials: dict[str, str] = {}
        self.ready = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    @property
    def socket_path(self) -> Path | None:
        listen = self.settings.admin_listen
        return Path(listen.removeprefix("unix/")) if listen.startswith("unix/") else None

    def _admin_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            socket = self.socket_path
            connector = aiohttp.UnixConnector(path=str(socket)) if socket else None
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=10)
            )
        return self._session

    def _admin_url(self, path: str) -> str:
        host = "localhost" if self.socket_path else self.settings.admin_listen
        return f"http://{host}{path}"

    async def _load(self, config: dict[str, Any]) -> None:
        session = self._admin_session()
        try:
            async with session.post(
                self._admin_url("/load"),
                data=json.dumps(config),
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status != 200:
                    detail = (await response.text())[:500]
                    raise IngressUnavailable(f"caddy refused the config: {detail}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise IngressUnavailable(f"caddy admin API unreachable: {exc}") from exc

    async def apply(self, table: pb.RouteTable) -> int:
        """Serve `table` from now on; its version once Caddy took it."""
        if not self.ready.is_set():
            raise IngressUnavailable("caddy is not running")
        async with self._lock:
            await self._render(table)
            self.routes_version = table.version
        log.info(
            "ingress_routes_applied",
            version=table.version,
            routes=len(table.routes),
            direct=len(self._dials),
        )
        return table.version

    @property
    def dials(self) -> dict[str, str]:
        """Upstream address -> the container address Caddy dials for it, right now."""
        return dict(self._dials)

    async def refresh(self) -> None:
        """Render the table Caddy serves again if the container addresses of its local
        upstreams changed (a container started, exited or went). Never raises: a Caddy
        that is down comes back empty and gets the whole table again anyway."""
        async with self._lock:
            table = self._table
            if table is None or not self.ready.is_set():
                return
            if direct_dials(table, self.local_ports()) == self._dials:
                return
            try:
                await self._render(table)
            except IngressUnavailable as exc:
                log.warning("ingress_refresh_failed", error=str(exc))
                return
        log.info("ingress_local_upstreams_changed", version=table.version, direct=self._dials)

    async def _render(self, table: pb.RouteTable) -> None:
        dials = direct_dials(table, self.local_ports())
        await self._load(caddy_config(table, self.settings, dials))
        self._table, self._dials = table, dials

    async def run(self) -> None:
        """Keep Caddy running until cancelled."""
        delay = 0.2
        try:
            while True:
                started = asyncio.get_running_loop().time()
                await self._run_once()
                if asyncio.get_running_loop().time() - started > 30:
                    delay = 0.2
                await asyncio.sleep(delay)
                delay = min(RESTART_DELAY_MAX, delay * 2)
        finally:
            await self._stop()

    async def _prepare(self) -> tuple[Path, Path]:
        def write() -> tuple[Path, Path]:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.run_dir.chmod(0o700)
            Path(self.settings.storage_dir).mkdir(parents=True, exist_ok=True)
            socket = self.socket_path
            if socket is not None:
                socket.unlink(missing_ok=True)
            bootstrap = self.run_dir / "bootstrap.json"
            empty = caddy_config(pb.RouteTable(), self.settings)
            bootstrap.write_text(json.dumps(empty), encoding="utf-8")
            return bootstrap, self.run_dir / "caddy.log"

        return await asyncio.to_thread(write)

    async def _run_once(self) -> None:
        bootstrap, log_path = await self._prepare()
        env = {
            **{name: os.environ.get(name, value) for name, value in GO_RUNTIME_ENV.items()},
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.run_dir),
            "XDG_CONFIG_HOME": str(self.run_dir / "config"),
            "XDG_DATA_HOME": str(self.run_dir / "data"),
        }
        output = await asyncio.to_thread(log_path.open, "ab")
        try:
            self.process = await spawn(
                self.binary, "run", "--config", str(bootstrap),
                stdin=DEVNULL, stdout=output, stderr=output, env=env,
            )  # fmt: skip
        except OSError as exc:
            # A missing or broken binary must not take the agent down: its containers
            # keep running, and the ingress comes back once the binary is fixed.
            log.error("ingress_caddy_unstartable", binary=self.binary, error=str(exc))
            return
        finally:
            await asyncio.to_thread(output.close)
        self.routes_version = 0
        try:
            await self._wait_admin()
            await self._check_alone(self.process.pid)
            self.ready.set()
            log.info("ingress_caddy_started", pid=self.process.pid)
            code = await self.process.wait()
            log.warning("ingress_caddy_exited", code=code, log=str(log_path))
        except IngressUnavailable as exc:
            log.warning("ingress_caddy_not_ready", error=str(exc), log=str(log_path))
            await self._stop()
        finally:
            self.ready.clear()
            self.routes_version, self._table, self._dials = 0, None, {}

    async def _wait_admin(self) -> None:
        assert self.process is not None
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                raise IngressUnavailable(f"caddy exited with {self.process.returncode}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._admin_session().get(self._admin_url("/config/")) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise IngressUnavailable("caddy's admin API did not answer")

    async def _check_alone(self, pid: int) -> None:
        """IngressUnavailable when another process listens on our ports beside Caddy
        (agent/ingress/port_sharing.py); seen twice, as a socket that closes between
        reading the listeners and Caddy's sockets would look like another's."""
        ports = (self.settings.http_port, self.settings.https_port)
        for look in range(2):
            try:
                others = await asyncio.to_thread(
                    others_listening, pid, self.settings.bind_host, ports
                )
            except OSError as exc:  # Caddy gone meanwhile (its exit is seen next)
                log.warning("ingress_ports_unchecked", error=str(exc))
                return
            if not others:
                return
            if look == 0:
                await asyncio.sleep(0.2)
        log.error("ingress_ports_shared", listeners=others, ports=list(ports))
        raise IngressUnavailable(
            f"another process also listens on {', '.join(others)}: Caddy would share "
            "its connections with it (stop it, e.g. the host's caddy.service, or give "
            "the ingress other ports)"
        )

    async def _stop(self) -> None:
        process, self.process = self.process, None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if process is not None:
            await stop_process(process, signal.SIGTERM, 5)
