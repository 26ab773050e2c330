"""The node fingerprint (psutil, /proc) and the host sample shared by all consumers."""

from __future__ import annotations

import asyncio
import platform
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from agent.stats.cgroup import cgroup_version
from agent.stats.host_sample import HostReader, HostSample
from common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NodeFingerprint:
    """What the node is made of; sent at enrolment and in GetNodeInfo."""

    cpu_count: int
    cpu_model: str
    memory_bytes: int
    disk_bytes: int
    os: str
    kernel: str
    docker_version: str
    agent_version: str
    hostname: str
    cgroup_version: int
    # The room volumes with a disk limit may take: the size of the filesystem holding
    # the volumes, less what the operator reserves.
    allocatable_disk_bytes: int = 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def node_fingerprint(
    data_dir: Path, docker_version: str, agent_version: str, disk_reserved_bytes: int = 0
) -> NodeFingerprint:
    """The fingerprint of this host; `disk_reserved_bytes` of the data directory's
    filesystem are not offered to volumes."""
    disk = psutil.disk_usage(str(data_dir if data_dir.exists() else Path("/")))
    return NodeFingerprint(
        cpu_count=psutil.cpu_count() or 1,
        cpu_model=_cpu_model(),
        memory_bytes=psutil.virtual_memory().total,
        disk_bytes=disk.total,
        allocatable_disk_bytes=max(0, disk.total - disk_reserved_bytes),
        os=_os_name(),
        kernel=platform.release(),
        docker_version=docker_version,
        agent_version=agent_version,
        hostname=socket.gethostname(),
        cgroup_version=cgroup_version(),
    )


class HostMonitor:
    """Shares one host sample among all consumers: the CPU figure is a delta since the
    previous sample, so uncoordinated callers would shrink each other's window.
    refresh_quietly() lets the container sampler take it in its own worker call
    (StatsSampler.run_alongside), so a heartbeat usually finds it fresh."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._latest: tuple[float, HostSample] | None = None  # (monotonic time, sample)
        self._lock = asyncio.Lock()
        self._sampling = threading.Lock()  # one CPU delta at a time
        self._reader: HostReader | None = None  # opened by the first sample

    def refresh(self) -> HostSample:
        """Take a host sample now and keep it (blocking, thread-safe)."""
        with self._sampling:
            if self._reader is None:
                self._reader = HostReader()
            sample = self._reader.sample(self._data_dir)
            self._latest = (time.monotonic(), sample)
            return sample

    def refresh_quietly(self) -> None:
        """refresh(), a failure logged: latest() then takes its own and raises."""
        try:
            self.refresh()
        except (OSError, ValueError) as exc:
            log.warning("host_sample_failed", error=str(exc))

    async def latest(self, max_age: float) -> HostSample:
        """A host sample no older than `max_age` seconds."""
        async with self._lock:
            latest = self._latest
            if latest is not None and time.monotonic() - latest[0] <= max_age:
                return latest[1]
            return await asyncio.to_thread(self.refresh)

    def close(self) -> None:
        """Close the files the samples are read from (a later sample opens them again)."""
        with self._sampling:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
