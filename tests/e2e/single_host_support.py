"""`encedeus up` as a subprocess in a temp dir: the whole system a newcomer starts.

The stack's containers carry a label unique to the test session and are removed at
teardown, whatever the tests left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.docker_support import remove_labelled_containers

ENCEDEUS = str(Path(sys.executable).with_name("encedeus"))
SESSION_LABEL = ("encedeus.test", f"e2e-{uuid.uuid4().hex[:12]}")
START_TIMEOUT = 90.0


@dataclass
class SingleHost:
    """A running `encedeus up`: its URL, admin credentials, data dir and process, and
    the web UI's URL it printed for browsers."""

    url: str
    admin_username: str
    admin_password: str
    data_dir: Path
    process: subprocess.Popen[str]
    output: list[str]

    @property
    def ui_url(self) -> str:
        for line in self.output:
            if match := re.search(r"Web UI: (\S+?)/?$", line):
                return match.group(1)
        raise AssertionError(f"no web UI URL in {self.output}")


def _read_banner(process: subprocess.Popen[str], output: list[str]) -> tuple[str, str, str]:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    url = username = password = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"encedeus up exited early: {''.join(output)}")
        output.append(line)
        if match := re.search(r"Control plane: (\S+)", line):
            url = match.group(1)
        if match := re.search(r"Admin: (\S+) / (\S+)", line):
            username, password = match.group(1), match.group(2)
        if "Ctrl-C" in line:
            return url, username, password
    raise AssertionError("encedeus up did not print its banner in time")


def _end(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    assert process.stdout is not None
    process.stdout.close()


def _agent_log_tail(data_dir: Path, lines: int = 20) -> str:
    try:
        text = (data_dir / "agent.log").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no agent log)"
    return "agent.log ends with:\n" + "\n".join(text.splitlines()[-lines:])


def start_up(data_dir: Path, *extra: str, port_range: str = "31700-31799") -> SingleHost:
    """Start `encedeus up` and wait for its banner (the local node is ready then)."""
    command = [
        ENCEDEUS, "up", "--data-dir", str(data_dir), "--port", "0", "--free-ports",
        "--port-range", port_range, "--agent-label", "=".join(SESSION_LABEL), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    output: list[str] = []
    try:
        url, username, password = _read_banner(process, output)
    except AssertionError as exc:
        _end(process)
        raise AssertionError(f"{exc}\n{_agent_log_tail(data_dir)}") from None
    except BaseException:
        _end(process)
        raise
    assert "(ready)" in "".join(output), "".join(output)
    return SingleHost(url, username, password, data_dir, process, output)


def stop_up(host: SingleHost, timeout: float = 40.0) -> int:
    """SIGINT, as Ctrl-C would; the exit code."""
    if host.process.poll() is None:
        host.process.send_signal(signal.SIGINT)
    try:
        code = host.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        host.process.kill()
        host.process.wait()
        raise
    assert host.process.stdout is not None
    host.output.extend(host.process.stdout.readlines())
    host.process.stdout.close()
    return code


def remove_session_containers() -> None:
    """Remove every container this test session's agents made."""
    remove_labelled_containers(dict([SESSION_LABEL]))


def running_stack(data_dir: Path, *extra: str, port_range: str) -> Iterator[SingleHost]:
    """Fixture body: a started stack, stopped and cleaned up afterwards."""
    host = start_up(data_dir, *extra, port_range=port_range)
    try:
        yield host
    finally:
        try:
            stop_up(host)
        finally:
            remove_session_containers()
