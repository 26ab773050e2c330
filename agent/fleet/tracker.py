"""Keeps the agent's picture of its servers in step with the engine.

Engine events (from the runtime's subscription thread) and delayed machine events
(stop timers) go through one queue and are applied in order by `run()`. Instructions
the lifecycle machines return are carried out here: stdin writes, signals, timers,
health probing and lifecycle publication.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path

from agent.console.history import ConsoleHistory, ConsoleLine
from agent.fleet.hub import WatchHub
from agent.fleet.server import ManagedServer, machine_for
from agent.fleet.spec import SERVER_LABEL, SPEC_LABEL, decode_spec, volume_name
from agent.lifecycle import machine as lm
from agent.lifecycle.health import probe_once
from agent.runtime import (
    ContainerEvent,
    ContainerInfo,
    ContainerRuntime,
    ContainerRuntimeError,
    NotFound,
    NotRunning,
)
from agent.stats.sampler import StatsSampler
from common.logging import get_logger
from protos import agent_pb2 as pb

log = get_logger(__name__)
# Console lines the agent itself wrote, and install scripts' output: never a done line.
NOT_SERVER_OUTPUT = frozenset({"daemon", "install"})
KIND_TO_PROTO = {
    lm.Kind.STARTED: pb.LIFECYCLE_KIND_STARTED,
    lm.Kind.RUNNING: pb.LIFECYCLE_KIND_RUNNING,
    lm.Kind.STOPPING: pb.LIFECYCLE_KIND_STOPPING,
    lm.Kind.EXITED: pb.LIFECYCLE_KIND_EXITED,
    lm.Kind.HEALTH_CHANGED: pb.LIFECYCLE_KIND_HEALTH_CHANGED,
}
_Item = ContainerEvent | tuple[str, lm.Event]


class ServerTracker:
    """The servers this agent manages, fed by engine events. Loop-thread only,
    except `on_engine_event`, which any thread may call."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        sampler: StatsSampler,
        hub: WatchHub,
        *,
        labels: Mapping[str, str],
        find_by: Mapping[str, str],
        volumes_dir: Path,
        history_lines: int,
    ) -> None:
        self.runtime, self.sampler, self.hub = runtime, sampler, hub
        self.labels = dict(labels)  # put on new containers
        self.find_by = dict(find_by)  # a subset of them: what adoption and events match
        self.volumes_dir = volumes_dir
        self.history_lines = history_lines
        self.servers: dict[str, ManagedServer] = {}
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self.ready = asyncio.Event()  # set once existing containers are re-attached
        self._removal_listeners: list[Callable[[str], object]] = []

    # ---- running ------------------------------------------------------------

    async def run(self) -> None:
        """Re-attach to existing containers, then apply events until cancelled."""
        self._loop = asyncio.get_running_loop()
        subscription = self.runtime.subscribe(self.find_by, self.on_engine_event)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                while True:
                    item = await self._queue.get()
                    try:
                        await self._apply_item(item)
                    except Exception:
                        log.exception("event_failed", item=repr(item))
        finally:
            subscription.close()
            for server in self.servers.values():
                if server.attachment is not None:
                    server.attachment.close()

    def on_engine_event(self, event: ContainerEvent) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def feed_later(self, server_id: str, event: lm.Event) -> None:
        self._queue.put_nowait((server_id, event))

    async def _apply_item(self, item: _Item) -> None:
        if isinstance(item, tuple):
            server = self.servers.get(item[0])
            if server is not None:
                await self.feed(server, item[1])
            return
        if item.action == "resync":
            await self.resync()
            self.ready.set()
            return
        server_id = item.labels.get(SERVER_LABEL, "")
        server = self.servers.get(server_id)
        if server is None or server.container_id != item.container_id:
            return
        if item.action == "start":
            await self.observe_start(server)
        elif item.action == "die":
            await self.observe_exit(server)
        elif item.action == "destroy":
            self.forget(server)  # removed behind our back (e.g. `docker rm -f`)

    # ---- engine facts ----------------------------------------------------------

    async def resync(self) -> None:
        """Adopt containers not yet known (agent start), catch up on missed events, and
        forget servers whose container was removed meanwhile."""
        # Taken before the listing: a server created during it is not in the listing.
        known_before = list(self.servers.values())
        listing = await self.runtime.list_containers(self.find_by)
        listed = {info.id for info in listing}
        for server in known_before:
            if server.container_id not in listed:
                self.forget(server)  # removed while the event stream was down
        for info in listing:
            server_id = info.labels.get(SERVER_LABEL, "")
            known = self.servers.get(server_id)
            if known is None and SPEC_LABEL in info.labels:
                await self.adopt(info)
            elif known is not None and known.container_id == info.id:
                if info.running:
                    await self.observe_start(known, info)
                else:
                    await self.observe_exit(known, info)

    async def adopt(self, info: ContainerInfo) -> ManagedServer:
        """Take over a container this agent (or a previous run of it) created."""
        spec = decode_spec(info.labels[SPEC_LABEL])
        server = self.make_server(spec, info, running=info.running)
        server.seen_start_ms = info.started_at_ms if info.running else 0
        server.seen_finish_ms = info.finished_at_ms
        self.servers[spec.id] = server
        with contextlib.suppress(ContainerRuntimeError):
            for chunk in await self.runtime.logs(info.id, self.history_lines):
                server.history.feed(chunk.stream, chunk.data)
            server.history.end()
        if info.running:
            await self.ensure_attached(server)
            self._track_stats(server)
            await self.execute(server, server.machine.resume())
        log.info("server_adopted", server_id=spec.id, running=info.running)
        return server

    def make_server(
        self, spec: pb.ServerSpec, info: ContainerInfo, *, running: bool
    ) -> ManagedServer:
        history = ConsoleHistory(self.history_lines)
        server = ManagedServer(
            spec=spec,
            info=info,
            machine=machine_for(spec, running=running),
            history=history,
            data_dir=self.volumes_dir / volume_name(spec),
        )
        if spec.done_pattern:
            history.add_listener(lambda line: self._on_line(server, line))
        return server

    async def observe_start(self, server: ManagedServer, info: ContainerInfo | None = None) -> None:
        """The container runs: feed Started once per run (keyed by its start time)."""
        try:
            info = info or await self.runtime.inspect(server.container_id)
        except NotFound:
            return
        if not info.running or info.started_at_ms == server.seen_start_ms:
            return
        server.info, server.seen_start_ms = info, info.started_at_ms
        await self.ensure_attached(server)
        self._track_stats(server)
        await self.feed(server, lm.Started())
        await self._replay_early_output(server)

    async def _replay_early_output(self, server: ManagedServer) -> None:
        """Match the done pattern against lines printed between the start call and
        Started: `_on_line` saw them while the state was not STARTING yet (a fast
        server prints its done line at once)."""
        since = server.start_requested_ms
        server.start_requested_ms = 0
        if not since or not server.spec.done_pattern:
            return
        for line in server.history.tail():
            if server.machine.state is not lm.State.STARTING:
                return
            if line.time_ms >= since and line.stream not in NOT_SERVER_OUTPUT:
                await self.feed(server, lm.ConsoleOutput(line.text))

    async def observe_exit(self, server: ManagedServer, info: ContainerInfo | None = None) -> None:
        """The container's process ended: feed Exited once per run (keyed by finish time)."""
        try:
            info = info or await self.runtime.inspect(server.container_id)
        except NotFound:
            return
        if info.running or info.finished_at_ms == server.seen_finish_ms:
            return
        if info.started_at_ms != server.seen_start_ms:
            # A run that began and ended between two looks: record its start first.
            server.seen_start_ms = info.started_at_ms
            await self.feed(server, lm.Started())
        server.info, server.seen_finish_ms = info, info.finished_at_ms
        self.sampler.untrack(server.id)
        if server.stop_timer is not None:
            server.stop_timer.cancel()
        await self.feed(server, lm.Exited(info.exit_code, info.oom_killed))
        server.note_exit()

    def on_removed(self, listener: Callable[[str], object]) -> None:
        """Call `listener(server_id)` whenever a server's container is gone, whether
        removed through the agent or behind its back. Listeners must not raise."""
        self._removal_listeners.append(listener)

    def forget(self, server: ManagedServer) -> None:
        """The container is gone: drop the server and tell watchers and listeners."""
        if self.servers.get(server.id) is not server:
            return
        del self.servers[server.id]
        self.sampler.untrack(server.id)
        if server.attachment is not None:
            server.attachment.close()
        if server.probe_task is not None:
            server.probe_task.cancel()
        self.publish(server, pb.LIFECYCLE_KIND_REMOVED)
        for listener in self._removal_listeners:
            listener(server.id)

    async def ensure_attached(self, server: ManagedServer) -> None:
        if server.attachment is not None and not server.attachment.closed:
            return
        history = server.history  # fed on the loop, in the turn that read the output
        server.attachment = await self.runtime.attach(
            server.container_id, history.feed, history.end
        )

    def _track_stats(self, server: ManagedServer) -> None:
        info = server.info
        self.sampler.track(
            server.id, info.pid, info.memory_limit_bytes, server.data_dir, info.started_at_ms
        )

    def _on_line(self, server: ManagedServer, line: ConsoleLine) -> None:
        if server.machine.state is lm.State.STARTING and line.stream not in NOT_SERVER_OUTPUT:
            self.feed_later(server.id, lm.ConsoleOutput(line.text))

    # ---- instructions -----------------------------------------------------------

    async def feed(self, server: ManagedServer, event: lm.Event) -> None:
        await self.execute(server, server.machine.handle(event))

    async def execute(self, server: ManagedServer, instructions: list[lm.Instruction]) -> None:
        for instruction in instructions:
            match instruction:
                case lm.Publish():
                    self.publish(server, instruction)
                case lm.WriteStdin(line=line):
                    await self._write_stop_command(server, line)
                case lm.SendSignal(signal=signal):
                    with contextlib.suppress(NotRunning, NotFound):
                        await self.runtime.signal(server.container_id, signal)
                case lm.ArmStopTimer(seconds=seconds, generation=generation):
                    event = lm.StopTimedOut(generation)
                    server.stop_timer = asyncio.get_running_loop().call_later(
                        seconds, self.feed_later, server.id, event
                    )
                case lm.StartProbing():
                    self._start_probing(server)
                case lm.StopProbing():
                    if server.probe_task is not None:
                        server.probe_task.cancel()
                        server.probe_task = None

    async def _write_stop_command(self, server: ManagedServer, line: str) -> None:
        try:
            if server.attachment is None:
                raise NotRunning("no console attached")
            await server.attachment.write(line.encode() + b"\n")
        except NotRunning:
            # No way to deliver the command: fall back to the signal, the timer still runs.
            with contextlib.suppress(NotRunning, NotFound):
                await self.runtime.signal(server.container_id, server.spec.stop.signal or "SIGTERM")

    def publish(
        self, server: ManagedServer, publish: lm.Publish | pb.LifecycleKind.ValueType
    ) -> None:
        if isinstance(publish, lm.Publish):
            event = pb.LifecycleEvent(
                server_id=server.id,
                kind=KIND_TO_PROTO[publish.kind],
                exit_code=publish.exit_code,
                oom_killed=publish.oom_killed,
                requested=publish.requested,
            )
        else:
            event = pb.LifecycleEvent(server_id=server.id, kind=publish)
        status = server.status()
        event.health = status.health
        event.status.CopyFrom(status)
        self.hub.publish(event)
        log.info("lifecycle", server_id=server.id, kind=pb.LifecycleKind.Name(event.kind))

    def _start_probing(self, server: ManagedServer) -> None:
        if server.probe_task is None and self._tasks is not None:
            server.probe_task = self._tasks.create_task(self._probe_loop(server))

    async def _probe_loop(self, server: ManagedServer) -> None:
        check = server.spec.health_check
        await asyncio.sleep(check.initial_delay_seconds)
        while server.machine.state is not lm.State.OFFLINE:
            healthy = await probe_once(
                check,
                self.runtime,
                server.container_id,
                server.info.ip_address,
                server.first_port(),
            )
            await self.feed(server, lm.HealthProbed(healthy))
            await asyncio.sleep(check.period_seconds or 10)
