"""Skyhook run from its own image (Dockerfile.agent) against the host's dockerd, with
the same controls as an agent process (tests/e2e/cluster_support.Process): start,
stop, kill, freeze, thaw, output.

The container is run as Dockerfile.agent documents: the Docker socket, the host's
PIDs and network, CAP_SYS_ADMIN, and the data directory bind-mounted at the same
path with `rshared` propagation (made a shared mount of itself first: the test
machines' / is private, unlike a systemd host's).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.agent_image_support import agent_image
from tests.e2e.cluster_support import Process

CONFIG_PATH = "/etc/encedeus/config.hcl"


def _docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def share_mount(path: Path) -> None:
    """Make `path` a shared mount of itself (idempotent), so a container's `rshared`
    bind of it is allowed and the agent's mounts beneath it reach the host."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mountpoint", "-q", str(path)], check=False)
    if mounted.returncode != 0:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "--make-rshared", str(path)], check=True)


@dataclass(kw_only=True)
class AgentContainer(Process):
    """One agent container named `name`, running `config` (an HCL file on the host)
    with its data directory `data_dir`; `labels` are put on the container itself so
    the session's clean-up removes it. (A Process whose `process` stays None.)"""

    name: str
    config: Path
    data_dir: Path
    labels: dict[str, str]

    def start(self) -> None:
        """Run the container (or start it again after `stop`/`kill`)."""
        if _docker("ps", "-aq", "--filter", f"name=^{self.name}$").strip():
            _docker("start", self.name)
            return
        share_mount(self.data_dir)
        labels = [arg for k, v in self.labels.items() for arg in ("--label", f"{k}={v}")]
        _docker(
            "run", "-d", "--name", self.name, *labels,
            "--pid", "host", "--network", "host",
            "--cap-add", "SYS_ADMIN", "--security-opt", "apparmor=unconfined",
            "-v", "/var/run/docker.sock:/var/run/docker.sock",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "-v", f"{self.data_dir}:{self.data_dir}:rshared",
            "-v", f"{self.config}:{CONFIG_PATH}:ro",
            agent_image(),
        )  # fmt: skip

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        _docker("stop", "-t", str(int(timeout)), self.name, check=False, timeout=timeout + 30)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all."""
        _docker("kill", self.name, check=False)

    def freeze(self) -> None:
        """Alive but silent (the cgroup freezer)."""
        _docker("pause", self.name, check=False)

    def thaw(self) -> None:
        """After `freeze`."""
        _docker("unpause", self.name, check=False)

    def output(self) -> str:
        """The end of its log."""
        return _docker("logs", "--tail", "60", self.name, check=False)[-4000:]

    def remove(self) -> None:
        """Remove the container (its data directory stays)."""
        _docker("rm", "-f", self.name, check=False)
