"""ManagedServer's status message: built once, rebuilt when what it shows changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from agent.console.history import ConsoleHistory
from agent.fleet.server import ManagedServer, machine_for
from agent.lifecycle.machine import Health, State
from agent.runtime import ContainerInfo
from protos import agent_pb2 as pb


def running_server() -> ManagedServer:
    spec = pb.ServerSpec(id="s1", image="busybox")
    info = ContainerInfo(
        id="c" * 64,
        name="s1",
        labels={"encedeus.server": "s1", "encedeus.spec": "..."},
        status="running",
        pid=42,
        created_at_ms=1,
        started_at_ms=2,
        finished_at_ms=0,
        exit_code=0,
        oom_killed=False,
        ip_address="",
        memory_limit_bytes=0,
    )
    machine = machine_for(spec, running=True)
    return ManagedServer(spec, info, machine, ConsoleHistory(10), Path("/nonexistent"))


def test_current_status_is_shared_until_what_it_shows_changes() -> None:
    server = running_server()
    first = server.current_status()
    assert server.current_status() is first
    assert first.state == pb.SERVER_STATE_RUNNING
    assert dict(first.labels) == {"encedeus.server": "s1"}

    server.machine.state = State.OFFLINE
    server.info = dataclasses.replace(server.info, finished_at_ms=3, exit_code=1)
    offline = server.current_status()
    assert offline is not first
    assert (offline.state, offline.exited, offline.exit_code) == (pb.SERVER_STATE_OFFLINE, True, 1)

    server.machine.health = Health.UNHEALTHY
    assert server.current_status().health == pb.HEALTH_UNHEALTHY
    server.install_state, server.install_exit_code = "failed", 7
    assert server.current_status().install_exit_code == 7


def test_status_is_a_copy_the_caller_may_change() -> None:
    server = running_server()
    mine = server.status()
    mine.pull.bytes_done = 50
    mine.labels["x"] = "y"
    assert not server.current_status().HasField("pull")
    assert "x" not in server.current_status().labels
    assert server.status() == server.current_status()
