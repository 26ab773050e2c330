"""The lifecycle of one server as a pure state machine.

`LifecycleMachine.handle(event)` takes one fact (the engine said the container
started or died, the control plane asked for a stop, a console line appeared, a
health probe answered, a timer fired) and returns instructions for the I/O shell:
what to write or signal, which timer to arm, which lifecycle event to publish. It does
no I/O, so every transition is unit-tested without Docker.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class State(enum.Enum):
    OFFLINE = "offline"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


class Health(enum.Enum):
    NONE = "none"  # no health check configured
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Kind(enum.Enum):
    STARTED = "started"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    HEALTH_CHANGED = "health_changed"


FATAL_SIGNALS = frozenset({"SIGKILL", "KILL", "9", "SIGTERM", "TERM", "15", "SIGINT", "SIGQUIT"})


# ---- events (facts in) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """The engine started the container."""


@dataclass(frozen=True, slots=True)
class Exited:
    """The engine says the container's process ended."""

    exit_code: int
    oom_killed: bool


@dataclass(frozen=True, slots=True)
class StopRequested:
    """Stop: write `command` to stdin when set, else send `signal`; kill after timeout."""

    command: str
    signal: str
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class KillRequested:
    signal: str


@dataclass(frozen=True, slots=True)
class ConsoleOutput:
    text: str


@dataclass(frozen=True, slots=True)
class HealthProbed:
    healthy: bool


@dataclass(frozen=True, slots=True)
class StopTimedOut:
    generation: int


Event = (
    Started | Exited | StopRequested | KillRequested | ConsoleOutput | HealthProbed | StopTimedOut
)


# ---- instructions (actions out) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteStdin:
    line: str


@dataclass(frozen=True, slots=True)
class SendSignal:
    signal: str


@dataclass(frozen=True, slots=True)
class ArmStopTimer:
    seconds: float
    generation: int


@dataclass(frozen=True, slots=True)
class StartProbing:
    pass


@dataclass(frozen=True, slots=True)
class StopProbing:
    pass


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish a lifecycle event (the machine's state is already updated)."""

    kind: Kind
    exit_code: int = 0
    oom_killed: bool = False
    requested: bool = False


Instruction = WriteStdin | SendSignal | ArmStopTimer | StartProbing | StopProbing | Publish


class LifecycleMachine:
    """The state of one server. `starting` becomes `running` when the health check
    passes or a console line matches `done_pattern`; with neither, at once. An exit
    after a stop or a fatal kill is `requested`; any other exit is a crash."""

    def __init__(
        self,
        *,
        has_health_check: bool = False,
        done_pattern: str = "",
        failure_threshold: int = 3,
        running: bool = False,
    ) -> None:
        self.has_health_check = has_health_check
        self.done_pattern = re.compile(done_pattern) if done_pattern else None
        self.failure_threshold = max(failure_threshold, 1)
        self.state = State.RUNNING if running else State.OFFLINE
        self.health = Health.STARTING if running and has_health_check else Health.NONE
        self.requested = False
        self.generation = 0
        self._failures = 0

    def resume(self) -> list[Instruction]:
        """Instructions to re-arm after re-attaching to a running container."""
        return [StartProbing()] if self.state is State.RUNNING and self.has_health_check else []

    def handle(self, event: Event) -> list[Instruction]:
        match event:
            case Started():
                return self._started()
            case Exited(exit_code=code, oom_killed=oom):
                return self._exited(code, oom)
            case StopRequested():
                return self._stop(event)
            case KillRequested(signal=signal):
                if self.state is not State.OFFLINE and signal.upper() in FATAL_SIGNALS:
                    self.requested = True
                return [SendSignal(signal)]
            case ConsoleOutput(text=text):
                if (
                    self.state is State.STARTING
                    and self.done_pattern
                    and self.done_pattern.search(text)
                ):
                    return self._running()
                return []
            case HealthProbed(healthy=healthy):
                return self._probed(healthy)
            case StopTimedOut(generation=generation):
                if self.state is State.STOPPING and generation == self.generation:
                    return [SendSignal("SIGKILL")]
                return []
        raise TypeError(f"unknown event {event!r}")

    def _started(self) -> list[Instruction]:
        if self.state in (State.STARTING, State.RUNNING):
            return []
        self.state, self.requested, self._failures = State.STARTING, False, 0
        out: list[Instruction] = [Publish(Kind.STARTED)]
        if self.has_health_check:
            self.health = Health.STARTING
            out.append(StartProbing())
        elif self.done_pattern is None:
            out += self._running()
        return out

    def _running(self) -> list[Instruction]:
        self.state = State.RUNNING
        return [Publish(Kind.RUNNING)]

    def _exited(self, code: int, oom: bool) -> list[Instruction]:
        requested = self.requested and not oom
        self.state, self.health, self.requested = State.OFFLINE, Health.NONE, False
        self.generation += 1  # disarms a pending stop timer
        out: list[Instruction] = [StopProbing()] if self.has_health_check else []
        out.append(Publish(Kind.EXITED, exit_code=code, oom_killed=oom, requested=requested))
        return out

    def _stop(self, event: StopRequested) -> list[Instruction]:
        if self.state in (State.OFFLINE, State.STOPPING):
            return []
        self.state, self.requested = State.STOPPING, True
        self.generation += 1
        action: Instruction = (
            WriteStdin(event.command) if event.command else SendSignal(event.signal or "SIGTERM")
        )
        return [
            Publish(Kind.STOPPING),
            action,
            ArmStopTimer(event.timeout_seconds, self.generation),
        ]

    def _probed(self, healthy: bool) -> list[Instruction]:
        if not self.has_health_check or self.state is State.OFFLINE:
            return []
        out: list[Instruction] = []
        if healthy:
            self._failures = 0
            if self.health is not Health.HEALTHY:
                self.health = Health.HEALTHY
                out.append(Publish(Kind.HEALTH_CHANGED))
            if self.state is State.STARTING:
                out += self._running()
            return out
        self._failures += 1
        if self._failures >= self.failure_threshold and self.health is not Health.UNHEALTHY:
            self.health = Health.UNHEALTHY
            out.append(Publish(Kind.HEALTH_CHANGED))
        return out
