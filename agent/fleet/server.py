"""One managed server: its spec, container, lifecycle machine and console."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from agent.console.history import ConsoleHistory
from agent.lifecycle.machine import Health, LifecycleMachine, State
from agent.runtime import AttachedStreams, ContainerInfo
from protos import agent_pb2 as pb

STATE_TO_PROTO = {
    State.OFFLINE: pb.SERVER_STATE_OFFLINE,
    State.STARTING: pb.SERVER_STATE_STARTING,
    State.RUNNING: pb.SERVER_STATE_RUNNING,
    State.STOPPING: pb.SERVER_STATE_STOPPING,
}
HEALTH_TO_PROTO = {
    Health.NONE: pb.HEALTH_UNSPECIFIED,
    Health.STARTING: pb.HEALTH_STARTING,
    Health.HEALTHY: pb.HEALTH_HEALTHY,
    Health.UNHEALTHY: pb.HEALTH_UNHEALTHY,
}


def machine_for(spec: pb.ServerSpec, *, running: bool) -> LifecycleMachine:
    return LifecycleMachine(
        has_health_check=spec.health_check.WhichOneof("probe") is not None,
        done_pattern=spec.done_pattern,
        failure_threshold=spec.health_check.failure_threshold or 3,
        running=running,
    )


@dataclass(eq=False)
class ManagedServer:
    """Everything the agent holds about one server (loop-thread only)."""

    spec: pb.ServerSpec
    info: ContainerInfo
    machine: LifecycleMachine
    history: ConsoleHistory
    data_dir: Path
    attachment: AttachedStreams | None = None
    probe_task: asyncio.Task[None] | None = None
    stop_timer: asyncio.TimerHandle | None = None
    seen_start_ms: int = 0
    seen_finish_ms: int = 0
    exits: int = 0
    exit_signal: asyncio.Event = field(default_factory=asyncio.Event)
    start_requested_ms: int = 0  # when the last start call began (tracker replays output)
    install_state: str = ""  # agent/fleet/install.py
    install_exit_code: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one operation at a time
    # What current_status() last showed and the message built from it.
    _status_inputs: tuple[object, ...] = field(default=(), repr=False)
    _status: pb.ServerStatus = field(default_factory=pb.ServerStatus, repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def container_id(self) -> str:
        return self.info.id

    def note_exit(self) -> None:
        self.exits += 1
        self.exit_signal.set()
        self.exit_signal = asyncio.Event()

    async def wait_exit(self, after: int) -> None:
        """Wait until more than `after` exits happened (bound it with asyncio.timeout)."""
        while self.exits <= after:
            await self.exit_signal.wait()

    def first_port(self) -> int:
        return self.spec.ports[0].container_port if self.spec.ports else 0

    def status(self) -> pb.ServerStatus:
        """This server's status, a message of the caller's own (it may change it)."""
        status = pb.ServerStatus()
        status.CopyFrom(self.current_status())
        return status

    def current_status(self) -> pb.ServerStatus:
        """This server's status, shared: read or copy it, never change it. Rebuilt only
        when what it shows changed (heartbeats show every server's status each second,
        and building 100 of them was a third of the agent's stats CPU)."""
        # `info` is frozen and replaced, never changed in place; the states are enums.
        machine = self.machine
        inputs = (
            self.spec.id,
            self.info,
            machine.state,
            machine.health,
            self.install_state,
            self.install_exit_code,
        )
        if inputs != self._status_inputs:
            self._status = self._build_status()
            self._status_inputs = inputs
        return self._status

    def _build_status(self) -> pb.ServerStatus:
        info = self.info
        exited = self.machine.state is State.OFFLINE and info.finished_at_ms > 0
        return pb.ServerStatus(
            id=self.id,
            container_id=info.id,
            state=STATE_TO_PROTO[self.machine.state],
            health=HEALTH_TO_PROTO[self.machine.health],
            created_at_ms=info.created_at_ms,
            started_at_ms=info.started_at_ms,
            finished_at_ms=info.finished_at_ms if exited else 0,
            exit_code=info.exit_code if exited else 0,
            oom_killed=info.oom_killed if exited else False,
            exited=exited,
            labels={k: v for k, v in info.labels.items() if k != "encedeus.spec"},
            image_digest=info.labels.get("encedeus.image-digest", ""),
            install_state=self.install_state,
            install_exit_code=self.install_exit_code,
        )

    def to_proto(self) -> pb.Server:
        return pb.Server(spec=self.spec, status=self.status())
