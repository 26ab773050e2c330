"""Template install scripts: run once in an install container before a server's
first start, and again on request (ReinstallServer).

The install container gets the server's limits and the hardening of every container
(agent/runtime: no capabilities, no-new-privileges, pids limit), the data directory
at /mnt/server, runs as root (eggs' scripts expect it) and has no network unless the
template asks. Root without capabilities cannot write another user's files, so the
directory is given to root for the install and handed back to the server's user at
the next start (ServerVolumes.ready re-owns it). Output goes to the server's console
history as stream "install"; the outcome is kept in `<agent dir>/installs/<id>` so a
restarted agent does not install again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from agent.console.history import ConsoleHistory
from agent.fleet.data_dir import ServerVolumes
from agent.fleet.server import ManagedServer
from agent.runtime import ContainerRuntime, ContainerRuntimeError, ContainerSpec, NotFound
from common.logging import get_logger
from protos import agent_pb2 as pb

log = get_logger(__name__)
INSTALL_LABEL = "encedeus.install"
INSTALL_MOUNT = "/mnt/server"
INSTALLED, FAILED, INSTALLING = "installed", "failed", "installing"
EXIT_POLL_SECONDS = 0.05


class InstallFailed(ContainerRuntimeError):
    """The install script exited non-zero (or could not run); the server stays off."""


def install_container_name(server_id: str) -> str:
    return f"encedeus-install-{server_id}"


class ServerInstaller:
    """Runs install scripts. Methods are called from the event loop."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        volumes: ServerVolumes,
        *,
        default_pids: int,
        log_max_size: str,
        log_max_files: int,
    ) -> None:
        self.runtime, self.volumes = runtime, volumes
        self.records = volumes.agent_dir / "installs"
        self.default_pids = default_pids
        self.log_max_size, self.log_max_files = log_max_size, log_max_files
        # An install outlives the call that began it (calls have short deadlines and an
        # install may take minutes): a later call for the same server waits for it.
        self._running: dict[str, asyncio.Task[None]] = {}

    def _record_path(self, server_id: str) -> Path:
        return self.records / server_id

    def _read(self, server_id: str) -> tuple[str, int]:
        try:
            data = json.loads(self._record_path(server_id).read_text(encoding="utf-8"))
            return str(data["state"]), int(data["exit_code"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return "", 0

    def _write(self, server_id: str, state: str, exit_code: int) -> None:
        self.records.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = self._record_path(server_id).with_suffix(".tmp")
        partial.write_text(json.dumps({"state": state, "exit_code": exit_code}), encoding="utf-8")
        partial.replace(self._record_path(server_id))

    def forget(self, server_id: str) -> None:
        """Drop the record (the server's data is deleted): blocking."""
        self._record_path(server_id).unlink(missing_ok=True)

    async def load(self, server: ManagedServer) -> None:
        """Fill the server's install state from its record."""
        server.install_state, server.install_exit_code = await asyncio.to_thread(
            self._read, server.id
        )

    async def ensure_installed(self, server: ManagedServer) -> None:
        """Run the install script unless it has succeeded before (no script: nothing).
        InstallFailed when it fails; the next call tries again."""
        if not server.spec.HasField("install"):
            return
        await self.load(server)
        if server.install_state != INSTALLED:
            await self.run(server)

    async def run(self, server: ManagedServer) -> None:
        """Run the install script now (or wait for the run in progress); InstallFailed
        unless it exits 0. Cancelling the caller does not cancel the install."""
        task = self._running.get(server.id)
        if task is None:
            task = asyncio.create_task(self._install(server), name=f"install-{server.id}")
            self._running[server.id] = task
            task.add_done_callback(lambda _: self._running.pop(server.id, None))
        await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel installs in progress (agent shutdown); their containers are removed."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _install(self, server: ManagedServer) -> None:
        spec = server.spec
        server.install_state = INSTALLING
        history = server.history
        history.note(f"[skyhook] running the install script in {spec.install.image}")
        try:
            exit_code = await self._run_container(spec, history)
        except ContainerRuntimeError as exc:
            await self._finish(server, FAILED, -1)
            raise InstallFailed(f"the install could not run: {exc}") from exc
        state = INSTALLED if exit_code == 0 else FAILED
        await self._finish(server, state, exit_code)
        history.note(f"[skyhook] install script exited with code {exit_code}")
        if exit_code != 0:
            raise InstallFailed(f"the install script failed with exit code {exit_code}")

    async def _finish(self, server: ManagedServer, state: str, exit_code: int) -> None:
        server.install_state, server.install_exit_code = state, exit_code
        await asyncio.to_thread(self._write, server.id, state, exit_code)
        log.info("server_install", server=server.id, state=state, exit_code=exit_code)

    def container_spec(self, spec: pb.ServerSpec) -> ContainerSpec:
        """The install container of `spec`."""
        install = spec.install
        return ContainerSpec(
            name=install_container_name(spec.id),
            image=install.image,
            command=[install.entrypoint or "sh", "-c", install.script],
            env=dict(spec.env),
            labels={INSTALL_LABEL: spec.id},
            memory_bytes=spec.resources.memory_bytes,
            nano_cpus=spec.resources.cpu_millis * 1_000_000,
            pids_limit=spec.resources.pids_limit or self.default_pids,
            binds={str(self.volumes.path(spec.id)): INSTALL_MOUNT},
            working_dir=INSTALL_MOUNT,
            user="0:0",
            network_disabled=not install.network,
            open_stdin=False,
            log_max_size=self.log_max_size,
            log_max_files=self.log_max_files,
        )

    async def _run_container(self, spec: pb.ServerSpec, history: ConsoleHistory) -> int:
        as_root = pb.ServerSpec()
        as_root.CopyFrom(spec)
        as_root.run_as_root = True
        await asyncio.to_thread(self.volumes.ready, as_root)
        name = install_container_name(spec.id)
        await self.runtime.remove(name)  # one left by an agent that died mid-install
        info = await self.runtime.create(self.container_spec(spec))
        ended = asyncio.Event()

        def on_output(stream: str, data: bytes) -> None:
            history.feed("install", data)

        attachment = await self.runtime.attach(info.id, on_output, ended.set)
        try:
            await self.runtime.start(info.id)
            await ended.wait()
            return await self._exit_code(info.id)
        finally:
            attachment.close()
            with contextlib.suppress(NotFound):
                await self.runtime.remove(info.id)

    async def _exit_code(self, container_id: str) -> int:
        # The streams close a moment before the engine records the exit.
        while True:
            info = await self.runtime.inspect(container_id)
            if not info.running:
                return info.exit_code
            await asyncio.sleep(EXIT_POLL_SECONDS)
