"""The lifecycle state machine, with no I/O."""

from __future__ import annotations

from agent.lifecycle.machine import (
    ArmStopTimer,
    ConsoleOutput,
    Exited,
    Health,
    HealthProbed,
    KillRequested,
    Kind,
    LifecycleMachine,
    Publish,
    SendSignal,
    Started,
    StartProbing,
    State,
    StopProbing,
    StopRequested,
    StopTimedOut,
    WriteStdin,
)


def test_start_without_checks_runs_at_once() -> None:
    machine = LifecycleMachine()
    assert machine.handle(Started()) == [Publish(Kind.STARTED), Publish(Kind.RUNNING)]
    assert machine.state is State.RUNNING
    assert machine.handle(Started()) == []  # the engine's event after our own start


def test_done_pattern_moves_starting_to_running() -> None:
    machine = LifecycleMachine(done_pattern=r"Done \(")
    assert machine.handle(Started()) == [Publish(Kind.STARTED)]
    assert machine.state is State.STARTING
    assert machine.handle(ConsoleOutput("Loading...")) == []
    assert machine.handle(ConsoleOutput("Done (3.1s)!")) == [Publish(Kind.RUNNING)]
    assert machine.handle(ConsoleOutput("Done (again)")) == []


def test_stop_command_then_timeout_kill_is_requested() -> None:
    machine = LifecycleMachine()
    machine.handle(Started())
    out = machine.handle(StopRequested(command="stop", signal="SIGTERM", timeout_seconds=5))
    assert out == [Publish(Kind.STOPPING), WriteStdin("stop"), ArmStopTimer(5, 1)]
    assert machine.handle(StopRequested("stop", "SIGTERM", 5)) == []  # already stopping
    assert machine.handle(StopTimedOut(1)) == [SendSignal("SIGKILL")]
    assert machine.handle(Exited(137, oom_killed=False)) == [
        Publish(Kind.EXITED, exit_code=137, requested=True)
    ]
    assert machine.state is State.OFFLINE
    assert machine.handle(StopTimedOut(1)) == []  # a stale timer does nothing


def test_stop_signal_and_stale_timer_after_restart() -> None:
    machine = LifecycleMachine()
    machine.handle(Started())
    out = machine.handle(StopRequested(command="", signal="SIGINT", timeout_seconds=3))
    assert out[1] == SendSignal("SIGINT")
    machine.handle(Exited(0, False))
    machine.handle(Started())
    assert machine.handle(StopTimedOut(1)) == []  # the timer of the previous run


def test_crash_and_oom_are_not_requested() -> None:
    machine = LifecycleMachine()
    machine.handle(Started())
    assert machine.handle(Exited(1, False)) == [Publish(Kind.EXITED, exit_code=1)]
    machine.handle(Started())
    machine.handle(KillRequested("SIGHUP"))  # not fatal: a later exit is still a crash
    out = machine.handle(Exited(137, True))
    assert out == [Publish(Kind.EXITED, exit_code=137, oom_killed=True)]


def test_fatal_kill_is_requested() -> None:
    machine = LifecycleMachine()
    machine.handle(Started())
    assert machine.handle(KillRequested("SIGKILL")) == [SendSignal("SIGKILL")]
    assert machine.handle(Exited(137, False))[0] == Publish(
        Kind.EXITED, exit_code=137, requested=True
    )


def test_health_checks_gate_running_and_report_changes() -> None:
    machine = LifecycleMachine(has_health_check=True, failure_threshold=2)
    assert machine.handle(Started()) == [Publish(Kind.STARTED), StartProbing()]
    assert machine.health is Health.STARTING
    assert machine.handle(HealthProbed(False)) == []
    assert machine.handle(HealthProbed(True)) == [
        Publish(Kind.HEALTH_CHANGED),
        Publish(Kind.RUNNING),
    ]
    assert machine.handle(HealthProbed(False)) == []
    assert machine.handle(HealthProbed(False)) == [Publish(Kind.HEALTH_CHANGED)]
    assert machine.health.value == "unhealthy"  # (mypy narrows the enum too eagerly)
    assert machine.state is State.RUNNING  # unhealthy is reported, not acted on here
    out = machine.handle(Exited(0, False))
    assert out[0] == StopProbing()
    assert machine.health.value == "none"


def test_resume_after_reattach() -> None:
    machine = LifecycleMachine(has_health_check=True, running=True)
    assert machine.state is State.RUNNING
    assert machine.resume() == [StartProbing()]
    assert LifecycleMachine(running=False).resume() == []
