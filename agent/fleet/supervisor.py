"""What the control plane can ask of this node's servers (the gRPC service's core)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from functools import partial

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from agent.console.history import ConsoleLine
from agent.fleet.config_edits import apply_config_edits
from agent.fleet.data_dir import ServerVolumes
from agent.fleet.host_ports import choose_host_ports
from agent.fleet.inputs import (
    InputSource,
    StagedInputs,
    discard_staged,
    stage_inputs,
    staging_dir,
)
from agent.fleet.install import InstallFailed, ServerInstaller
from agent.fleet.pull_grants import PullGrants
from agent.fleet.pulls import ImagePulls, PendingPull
from agent.fleet.server import ManagedServer
from agent.fleet.server_stats import add_server_stats
from agent.fleet.spec import container_spec, validate_spec, volume_name
from agent.fleet.tracker import ServerTracker
from agent.lifecycle import machine as lm
from agent.runtime import AlreadyExists, ImageNotFound, NotFound, NotRunning
from protos import agent_pb2 as pb

DEFAULT_STOP_TIMEOUT = 10
KILL_GRACE_SECONDS = 15.0  # how long an exit may lag behind SIGKILL before we give up


class Supervisor:
    """Operations on servers. Each server runs one operation at a time; errors are
    the runtime's typed exceptions (InvalidSpec, AlreadyExists, ImageNotFound, NotFound,
    NotRunning)."""

    def __init__(
        self,
        tracker: ServerTracker,
        volumes: ServerVolumes,
        *,
        cpu_count: int,
        port_range: tuple[int, int],
        default_pids: int = 512,
        log_max_size: str = "10m",
        log_max_files: int = 3,
        publish_address: str = "",
        inputs: InputSource | None = None,
    ) -> None:
        self.tracker = tracker
        self.inputs = inputs  # where CreateServer's `source` input files come from
        self.publish_address = publish_address
        self.runtime = tracker.runtime
        self.volumes = volumes
        self.cpu_count, self.port_range = cpu_count, port_range
        self.default_pids = default_pids
        self.log_max_size, self.log_max_files = log_max_size, log_max_files
        self._creating: set[str] = set()
        self._finishing: set[asyncio.Future[ManagedServer]] = set()
        grants = PullGrants(volumes.agent_dir / "image-pull-grants.json")
        self.pulls = ImagePulls(self.runtime, tracker.hub, grants)
        self.installer = ServerInstaller(
            self.runtime,
            volumes,
            default_pids=default_pids,
            log_max_size=log_max_size,
            log_max_files=log_max_files,
        )

    @property
    def servers(self) -> dict[str, ManagedServer]:
        return self.tracker.servers

    def get(self, server_id: str) -> ManagedServer:
        server = self.servers.get(server_id)
        if server is None:
            raise NotFound(f"no server {server_id!r} on this node")
        return server

    def describe(self, server_id: str) -> ManagedServer | PendingPull:
        """The server, or its pending pull when it has no container yet."""
        pending = self.pulls.pending.get(server_id)
        if pending is not None and pending.replaces is None:
            return pending
        return self.get(server_id)

    def list_servers(
        self, label_filter: Mapping[str, str] | None = None
    ) -> list[ManagedServer | PendingPull]:
        wanted = dict(label_filter or {})
        return [
            s
            for s in self._every_server()
            if all(s.current_status().labels.get(k) == v for k, v in wanted.items())
        ]

    def statuses(self) -> list[pb.ServerStatus]:
        """Every server's status, servers still waiting for their image included
        (shared messages: copy one before changing it)."""
        return [s.current_status() for s in self._every_server()]

    def images_in_use(self) -> list[str]:
        """The image references of every server, and of every pull under way."""
        return [s.spec.image for s in self._every_server()] + [
            p.spec.image for p in self.pulls.pending.values()
        ]

    def volumes_in_use(self) -> set[str]:
        """The volumes of every server here, of every pull and create under way."""
        used = {volume_name(s.spec) for s in self._every_server()}
        return used | self._creating  # a create's volume may still be named by its id

    def running_volumes(self) -> set[str]:
        """The volumes of the servers not offline (running, starting, stopping)."""
        return {
            volume_name(s.spec)
            for s in self._every_server()
            if s.current_status().state not in (pb.SERVER_STATE_OFFLINE, pb.SERVER_STATE_PULLING)
        }

    def _every_server(self) -> list[ManagedServer | PendingPull]:
        found: list[ManagedServer | PendingPull] = []
        for server in self.servers.values():
            pending = self.pulls.pending.get(server.id)
            found.append(pending if pending is not None else server)
        found.extend(p for p in self.pulls.pending.values() if p.replaces is None)
        return found

    # ---- create / start / stop ----------------------------------------------------

    async def create(self, spec: pb.ServerSpec, *, start: bool = False) -> ManagedServer:
        """Create (and start) from an image already on this node (never pulls)."""
        validate_spec(spec, self.cpu_count, self.port_range)
        self._claim(spec.id)
        try:
            return await self._create_now(_copy(spec), start)
        finally:
            self._creating.discard(spec.id)

    async def submit(
        self, spec: pb.ServerSpec, *, start: bool, replace: bool = False
    ) -> ManagedServer | PendingPull:
        """CreateServer (RecreateServer with `replace`): like :meth:`create` (and
        :meth:`recreate`), but an image that must be pulled first answers at once with
        the pending pull; the server follows on the Watch stream. A replacement keeps
        the old container until its pull succeeded."""
        validate_spec(spec, self.cpu_count, self.port_range)
        await asyncio.to_thread(self.volumes.check_limit, spec)  # before any replacement
        old = self.servers.get(spec.id)
        if replace and old is not None:
            pending = self.pulls.pending.get(spec.id)
            if pending is not None:
                return pending  # a replacement already waits for its image
            spec = _copy(spec)
            if await self.pulls.resolve(spec):
                return self.pulls.begin(spec, start, old, self._create_pulled)
            return await self._replace_now(spec, start)
        self._claim(spec.id)
        try:
            spec = _copy(spec)
            if await self.pulls.resolve(spec):
                return self.pulls.begin(spec, start, None, self._create_pulled)
            return await self._create_now(spec, start)
        finally:
            self._creating.discard(spec.id)

    def _claim(self, server_id: str) -> None:
        taken = server_id in self.servers or server_id in self.pulls.pending
        if taken or server_id in self._creating:
            raise AlreadyExists(f"server {server_id!r} already exists")
        self._creating.add(server_id)

    async def _create_now(self, spec: pb.ServerSpec, start: bool) -> ManagedServer:
        server = await self._create(spec)
        if start:
            # The data directory was made ready a moment ago by _create.
            await self.start(spec.id, data_ready=True)
        return server

    async def _create_pulled(self, spec: pb.ServerSpec, start: bool) -> ManagedServer:
        """Create (replacing any container of `spec.id`) once its image was pulled;
        claimed meanwhile, so a CreateServer in that window is ALREADY_EXISTS."""
        self._creating.add(spec.id)
        try:
            return await self._replace_now(spec, start)
        finally:
            self._creating.discard(spec.id)

    async def _replace_now(self, spec: pb.ServerSpec, start: bool) -> ManagedServer:
        """Replace the container (if any) of `spec.id` with one of `spec`."""
        old = self.servers.get(spec.id)
        if old is not None:
            async with old.lock:
                await self._prepare_then_discard(old, spec)
        return await self._create_now(spec, start)

    async def _create(self, spec: pb.ServerSpec) -> ManagedServer:
        # Shielded: a caller that goes away (a control plane killed mid-call) must not
        # leave a container Docker made but this agent never registered — its name
        # would refuse every later CreateServer of the same id. The creation finishes
        # and registers; the next CreateServer then finds it (ALREADY_EXISTS).
        creation = asyncio.ensure_future(self._create_and_register(spec))
        self._finishing.add(creation)
        creation.add_done_callback(self._finishing.discard)
        return await asyncio.shield(creation)

    async def _create_and_register(self, spec: pb.ServerSpec) -> ManagedServer:
        spec = _copy(spec)
        staged = await stage_inputs(spec, self.inputs, staging_dir(self.volumes.agent_dir))
        try:
            # Collected here: the worker thread must not iterate a dict the loop mutates.
            taken = {p.host_port for other in self.servers.values() for p in other.spec.ports}
            created_dir = await asyncio.to_thread(self._prepare_host, spec, taken, staged)
        finally:
            await asyncio.to_thread(discard_staged, staged)
        try:
            info = await self.runtime.create(
                container_spec(
                    spec,
                    labels=self.tracker.labels,
                    data_dir=self.volumes.path(volume_name(spec)),
                    user=self.volumes.user_of(spec),
                    default_pids=self.default_pids,
                    log_max_size=self.log_max_size,
                    log_max_files=self.log_max_files,
                )
            )
        except Exception:
            if created_dir:
                # Only while empty (the control plane retries).
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self.volumes.discard_empty, volume_name(spec))
            raise
        del spec.files[:]
        spec.ClearField("registry_auth")
        server = self.tracker.make_server(spec, info, running=False)
        self.servers[spec.id] = server
        self.tracker.publish(server, pb.LIFECYCLE_KIND_CREATED)
        return server

    def _prepare_host(self, spec: pb.ServerSpec, taken: set[int], staged: StagedInputs) -> bool:
        """Host ports and the data directory for `spec`, in one worker-thread hop
        (blocking); True when the directory was created now."""
        choose_host_ports(spec, taken, self.port_range, self.publish_address)
        return self.volumes.prepare(spec, staged=staged)

    async def start(self, server_id: str, *, data_ready: bool = False) -> ManagedServer:
        """Start; starting a running server is a no-op. `data_ready`: the data
        directory was made ready (owned, mounted) just now, by the create."""
        server = self.get(server_id)
        async with server.lock:
            await self._start(server, data_ready=data_ready)
        return server

    async def _start(self, server: ManagedServer, *, data_ready: bool = False) -> None:
        if server.machine.state is not lm.State.OFFLINE:
            return
        if server.spec.HasField("install"):
            # The install container hands the files back to the server's user, but a
            # first install leaves them as root meanwhile: make the directory ready after.
            await self.installer.ensure_installed(server)
            data_ready = False
        if not data_ready:
            await asyncio.to_thread(self.volumes.ready, server.spec)
        await self._apply_config_edits(server)
        # Attach before starting so that not one line of output is missed.
        await self.tracker.ensure_attached(server)
        server.start_requested_ms = int(time.time() * 1000)
        started = await self.runtime.start(server.container_id)
        await self.tracker.observe_start(server, started)

    async def _apply_config_edits(self, server: ManagedServer) -> None:
        if not server.spec.config_files:
            return
        problems = await asyncio.to_thread(
            apply_config_edits,
            str(self.volumes.path(server.id)),
            list(server.spec.config_files),
            self.volumes.owner_of(server.spec),
        )
        for problem in problems:
            server.history.note(f"[skyhook] {problem}")

    async def reinstall(self, server_id: str) -> ManagedServer:
        """Stop the server if it runs, then run its install script again; it stays
        offline. InstallFailed when it has no install script or the script fails."""
        server = self.get(server_id)
        if not server.spec.HasField("install"):
            raise InstallFailed(f"server {server_id!r} has no install script")
        async with server.lock:
            if server.machine.state is not lm.State.OFFLINE:
                await self._stop(server)
            await self.installer.run(server)
        return server

    async def stop(self, server_id: str, timeout_seconds: int = 0) -> ManagedServer:
        """Stop with the stop command or signal, SIGKILL after the timeout; returns once
        the container has exited. NotRunning when it is not running."""
        server = self.get(server_id)
        async with server.lock:
            await self._stop(server, timeout_seconds)
        return server

    async def _stop(self, server: ManagedServer, timeout_seconds: int = 0) -> None:
        if server.machine.state is lm.State.OFFLINE:
            raise NotRunning(f"server {server.id!r} is not running")
        policy = server.spec.stop
        timeout = timeout_seconds or policy.timeout_seconds or DEFAULT_STOP_TIMEOUT
        exits = server.exits
        request = lm.StopRequested(policy.command, policy.signal or "SIGTERM", timeout)
        await self.tracker.feed(server, request)
        async with asyncio.timeout(timeout + KILL_GRACE_SECONDS):
            await server.wait_exit(exits)

    @contextlib.asynccontextmanager
    async def held_stopped(self, server_id: str) -> AsyncIterator[bool]:
        """Stop the server when it runs and keep every other operation on it waiting
        while the body runs (yields whether it ran); start it again after a body that
        succeeded, when it ran before. A body that fails leaves it stopped."""
        server = self.get(server_id)
        async with server.lock:
            running = server.machine.state is not lm.State.OFFLINE
            if running:
                await self._stop(server)
            yield running
            if running:
                await self._start(server)

    async def restart(self, server_id: str) -> ManagedServer:
        server = self.get(server_id)
        async with server.lock:
            if server.machine.state is not lm.State.OFFLINE:
                await self._stop(server)
            await self._start(server)
        return server

    async def kill(self, server_id: str, signal: str = "") -> ManagedServer:
        """Send `signal` (default SIGKILL); for SIGKILL, return once it has exited."""
        server = self.get(server_id)
        if server.machine.state is lm.State.OFFLINE:
            raise NotRunning(f"server {server_id!r} is not running")
        signal = (signal or "SIGKILL").upper()
        exits = server.exits
        await self.tracker.feed(server, lm.KillRequested(signal))
        if signal in ("SIGKILL", "KILL", "9"):
            async with asyncio.timeout(KILL_GRACE_SECONDS):
                await server.wait_exit(exits)
        return server

    async def remove(self, server_id: str, *, delete_data: bool = False) -> None:
        """Stop (gracefully) if running, remove the container, optionally its data; a
        pending pull for it is abandoned."""
        pending = self.pulls.pending.get(server_id)
        await self.pulls.cancel(server_id)
        if pending is not None and pending.replaces is None:
            if delete_data:
                await asyncio.to_thread(self.volumes.delete, volume_name(pending.spec))
            return
        server = self.get(server_id)
        async with server.lock:
            await self._discard_container(server)
        if delete_data:
            await asyncio.to_thread(self.volumes.delete, volume_name(server.spec))
            await asyncio.to_thread(self.installer.forget, server_id)

    async def recreate(self, spec: pb.ServerSpec, *, start: bool = False) -> ManagedServer:
        """Replace the container of server `spec.id` with one of `spec`, keeping its
        data (a rolling update); creates it when there is none. A spec the create would
        refuse (InvalidSpec, ImageNotFound) is refused first, old container untouched.
        Never pulls (see :meth:`submit`)."""
        validate_spec(spec, self.cpu_count, self.port_range)
        await asyncio.to_thread(self.volumes.check_limit, spec)  # before any replacement
        old = self.servers.get(spec.id)
        if old is not None:
            if not await self.runtime.image_exists(spec.image):
                raise ImageNotFound.of(spec.image)  # the create's own refusal
            async with old.lock:
                await self._prepare_then_discard(old, spec)
        return await self.create(spec, start=start)

    async def _prepare_then_discard(self, old: ManagedServer, spec: pb.ServerSpec) -> None:
        """Prepare the data directory for `spec` (input files, re-owning) and only then
        discard the old container: a directory that cannot be prepared leaves the old
        container as it was. Call with `old.lock` held."""
        await asyncio.to_thread(partial(self.volumes.prepare, spec, resize=False))
        await self._discard_container(old)

    async def _discard_container(self, server: ManagedServer) -> None:
        """Stop (gracefully) if running, remove the container, forget the server; the
        data directory stays. Call with `server.lock` held."""
        if server.machine.state is not lm.State.OFFLINE:
            # On a timeout the forced removal below kills it anyway.
            with contextlib.suppress(TimeoutError):
                await self._stop(server)
        await self.runtime.remove(server.container_id)
        self.tracker.forget(server)

    # ---- console and stats -----------------------------------------------------------

    async def send_command(self, server_id: str, line: str) -> None:
        server = self.get(server_id)
        attachment = server.attachment
        if server.machine.state is lm.State.OFFLINE or attachment is None:
            raise NotRunning(f"server {server_id!r} is not running")
        await attachment.write(line.rstrip("\n").encode() + b"\n")

    async def logs(self, server_id: str, tail: int, follow: bool) -> AsyncIterator[ConsoleLine]:
        """The last `tail` lines, then (with follow) new ones until the output ends."""
        server = self.get(server_id)
        history = server.history
        # The output ends when the attachment closes, which may come before the exit
        # event: following a closed one would wait for an end that was already sent.
        attached = server.attachment is not None and not server.attachment.closed
        live = follow and attached and server.machine.state is not lm.State.OFFLINE
        queue = history.follow() if live else None
        try:
            for line in history.tail(tail):
                yield line
            while queue is not None:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            if queue is not None:
                history.unfollow(queue)

    async def add_stats(
        self, target: RepeatedCompositeFieldContainer[pb.ServerStats], max_age: float = 0.5
    ) -> None:
        """Append the stats of every server to `target` (zeros for servers that are not
        running); filled in place, as copying 100 of them into a heartbeat costs more
        than building them (agent/fleet/server_stats.py)."""
        samples = await self.tracker.sampler.latest(max_age)
        add_server_stats(target, self.servers.values(), samples)


def _copy(spec: pb.ServerSpec) -> pb.ServerSpec:
    copy = pb.ServerSpec()
    copy.CopyFrom(spec)
    return copy
