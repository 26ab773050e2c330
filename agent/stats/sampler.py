"""Samples every tracked container's resource use in one pass.

A sample costs a few preads per container (network: one read of the host's net/dev for
every container on veths, see agent/stats/veth.py) and runs in a worker thread; callers ask
for `latest(max_age)` so that several consumers (Watch streams, WebSockets) at the
same rate share one sample instead of each taking their own.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from agent.fleet.volume_images import is_own_filesystem, used_bytes
from agent.stats.cgroup import CgroupReader, NetDevReader
from agent.stats.veth import HostNetDev, namespace_id, veth_peers
from common.logging import get_logger

log = get_logger(__name__)


class ContainerSample(NamedTuple):
    """Resource use of one server at one moment (cpu_absolute: 100 = one core); a
    tuple, as 100 are made each second and a frozen dataclass costs four times as much
    to build."""

    server_id: str
    memory_bytes: int
    memory_limit_bytes: int
    cpu_absolute: float
    rx_bytes: int
    tx_bytes: int
    disk_bytes: int
    uptime_ms: int


def directory_bytes(path: Path) -> int:
    """Apparent size of every regular file beneath `path` (blocking)."""
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                continue  # deleted while walking
    return total


def volume_bytes(path: Path) -> int:
    """What a data directory holds: statfs of its image when it has one (a disk
    limit), else a walk (blocking)."""
    if is_own_filesystem(path):
        return used_bytes(path)
    return directory_bytes(path)


class _Tracked:
    def __init__(self, pid: int, limit: int, data_dir: Path, started_at_ms: int) -> None:
        self.pid, self.limit, self.data_dir = pid, limit, data_dir
        self.started_at_ms = started_at_ms
        self.cgroup: CgroupReader | None = None
        self.net: NetDevReader | None = None  # when its veths are not all its devices
        self.veths: list[bytes] = []  # else: their names in the host's net/dev
        self.last_cpu_ns = 0
        self.last_wall_ns = 0
        self.disk_bytes = 0
        self.disk_at = 0.0

    def open(self, clock: Callable[[], float]) -> None:
        self.cgroup = CgroupReader(self.pid, clock=clock)
        try:
            self.net = NetDevReader(self.pid)
        except OSError:
            self.close()
            raise

    def use_veths(self, peers: dict[int, list[bytes]]) -> None:
        """Read the host's side of the container's veths (`peers`: veth_peers()) when
        they are all of its devices; else keep its net/dev."""
        assert self.net is not None
        nsid = namespace_id(self.pid)
        veths = peers.get(nsid, []) if nsid is not None else []
        if veths and len(veths) == self.net.devices():
            self.net.close()
            self.net, self.veths = None, veths

    def network(self, host: dict[bytes, tuple[int, int]]) -> tuple[int, int]:
        """(rx, tx) bytes of the container; `host` is the host's net/dev, whose
        receive is the container's send on a veth."""
        if self.net is not None:
            return self.net.read()
        rx = tx = 0
        for name in self.veths:
            host_rx, host_tx = host[name]  # KeyError: the veth went with the container
            rx, tx = rx + host_tx, tx + host_rx
        return rx, tx

    def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.close()
        if self.net is not None:
            self.net.close()
        self.cgroup = self.net = None
        self.veths = []


class StatsSampler:
    """Tracks running containers and samples them; sample() is blocking and thread-safe."""

    def __init__(
        self,
        host_memory_bytes: int,
        disk_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host_memory = host_memory_bytes
        self._disk_interval = disk_interval_seconds
        self._clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._latest: dict[str, ContainerSample] = {}
        self._latest_at = -1e9
        self._generation = 0  # bumped by track(): a sample of an older one is stale
        self._latest_generation = -1
        self._refresh = asyncio.Lock()
        self._host_net: HostNetDev | None = None
        self._alongside: list[Callable[[], None]] = []

    def run_alongside(self, task: Callable[[], None]) -> None:
        """Also run `task` (blocking, must not raise) in the worker call of every sample
        latest() takes: a heartbeat then costs one thread hop for its host and
        container figures, not two (each hop costs the process ~0.1 ms of CPU)."""
        self._alongside.append(task)

    def track(self, server_id: str, pid: int, limit: int, data_dir: Path, started_ms: int) -> None:
        """Sample `server_id` (a running container with init process `pid`) from now on."""
        with self._lock:
            old = self._tracked.pop(server_id, None)
            if old is not None:
                old.close()
            self._tracked[server_id] = _Tracked(pid, limit, data_dir, started_ms)
            self._generation += 1  # the cached sample lacks this server

    def untrack(self, server_id: str) -> None:
        """Stop sampling `server_id` (it stopped or was removed)."""
        with self._lock:
            old = self._tracked.pop(server_id, None)
            if old is not None:
                old.close()
            self._latest.pop(server_id, None)

    def sample(self) -> dict[str, ContainerSample]:
        """One sample of every tracked container; the first one of each has cpu 0."""
        with self._lock:
            # The clocks are read once per sample, not per container: the CPU figures
            # are deltas between samples, taken in the same order each time.
            now, wall_ns, now_ms = self._clock(), time.monotonic_ns(), time.time_ns() // 1_000_000
            self._open_new()
            host = self._host_net.read() if self._host_net is not None else {}
            result = {}
            for server_id, tracked in list(self._tracked.items()):
                if tracked.cgroup is None:
                    continue  # opening it failed: the process is gone
                try:
                    result[server_id] = self._sample_one(
                        server_id, tracked, host, now, wall_ns, now_ms
                    )
                except (OSError, ValueError, KeyError) as exc:
                    # The process is gone (exit races the event) or its cgroup moved.
                    log.debug("stats_sample_failed", server_id=server_id, error=str(exc))
                    tracked.close()
            return result

    def _open_new(self) -> None:
        opened = []
        for tracked in self._tracked.values():
            if tracked.cgroup is None:
                try:
                    tracked.open(self._clock)
                    opened.append(tracked)
                except (OSError, ValueError, KeyError) as exc:
                    log.debug("stats_open_failed", pid=tracked.pid, error=str(exc))
        if not opened:
            return
        try:
            peers = veth_peers()  # one dump for every container opened in this sample
            if self._host_net is None:
                self._host_net = HostNetDev()
            for tracked in opened:
                tracked.use_veths(peers)
        except (OSError, ValueError) as exc:
            log.debug("veth_lookup_failed", error=str(exc))  # they keep their net/dev

    def _sample_one(
        self,
        server_id: str,
        tracked: _Tracked,
        host: dict[bytes, tuple[int, int]],
        now: float,
        wall_ns: int,
        now_ms: int,
    ) -> ContainerSample:
        cgroup = tracked.cgroup
        assert cgroup is not None
        (cpu_ns, memory), cpu = cgroup.read(now), 0.0
        if tracked.last_wall_ns and wall_ns > tracked.last_wall_ns:
            cpu = 100.0 * (cpu_ns - tracked.last_cpu_ns) / (wall_ns - tracked.last_wall_ns)
            if cpu < 0.0:
                cpu = 0.0  # the counter went back: its cgroup changed
        tracked.last_cpu_ns, tracked.last_wall_ns = cpu_ns, wall_ns
        if now - tracked.disk_at >= self._disk_interval:
            tracked.disk_bytes = volume_bytes(tracked.data_dir)
            tracked.disk_at = now
        rx, tx = tracked.network(host)
        uptime = now_ms - tracked.started_at_ms if tracked.started_at_ms else 0
        return ContainerSample(
            server_id,
            memory,
            tracked.limit or self._host_memory,
            cpu,
            rx,
            tx,
            tracked.disk_bytes,
            uptime if uptime > 0 else 0,
        )

    async def latest(self, max_age: float) -> dict[str, ContainerSample]:
        """A sample no older than `max_age` seconds, taken in a worker thread if needed."""
        async with self._refresh:
            stale = self._latest_generation != self._generation
            if stale or self._clock() - self._latest_at > max_age:
                generation = self._generation
                self._latest = await asyncio.to_thread(self._sample_and_run_alongside)
                self._latest_at, self._latest_generation = self._clock(), generation
            return self._latest

    def _sample_and_run_alongside(self) -> dict[str, ContainerSample]:
        samples = self.sample()
        for task in self._alongside:
            task()
        return samples

    def close(self) -> None:
        with self._lock:
            for tracked in self._tracked.values():
                tracked.close()
            self._tracked.clear()
            if self._host_net is not None:
                self._host_net.close()
                self._host_net = None
