"""Per-container memory and CPU from cgroup files, v1 or v2.

Files are opened once and re-read with pread at offset 0 (cgroupfs regenerates the
content on each read): open/close per sample would double the cost at 50 containers.
`memory.stat`, whose generation costs the kernel more than the other files (a quarter
of a 1 Hz sample of 100 containers here), is re-read only when the usage read on every
sample moved by more than MEMORY_STAT_MOVE since, or after MEMORY_STAT_INTERVAL
seconds: the inactive page cache it gives (subtracted from the usage) moves with the
usage when files are read or written; alone (pages aging between the kernel's active
and inactive lists) it moves slowly. An idle container's is read every 30 s, a busy
one's on every sample, as `docker stats` does.

The usage itself (:meth:`CgroupReader.read`) is read again only when the container
used CPU since it was read, or after MEMORY_IDLE_INTERVAL seconds: memory is charged
to a cgroup by its own tasks (faults, allocations, their reads and writes), which
shows in its CPU time. What moves it otherwise (reclaim under pressure, socket buffers
filled from interrupts) shows within that interval. The CPU counter is read anyway,
and an idle container's sample then costs one read instead of two.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")
MEMORY_STAT_INTERVAL = 30.0
MEMORY_STAT_MOVE = 1 << 20  # bytes of usage
MEMORY_IDLE_INTERVAL = 10.0


def cgroup_version(root: Path = CGROUP_ROOT) -> int:
    """2 on a unified hierarchy, else 1."""
    return 2 if (root / "cgroup.controllers").exists() else 1


def _read_int(fd: int) -> int:
    raw = os.pread(fd, 64, 0)  # int() takes the trailing newline
    return 0 if raw.startswith(b"max") else int(raw)


def field_value(text: bytes, key: bytes, end: bytes = b"\n") -> bytes | None:
    """What follows `key` at the start of a line of `text`, up to `end` (None: no such
    line), as in `memory.stat` (`key` = b"inactive_file ") or /proc/meminfo."""
    start = text.find(b"\n" + key)
    if start < 0:
        if not text.startswith(key):
            return None
        start = -1
    start += len(key) + 1
    stop = text.find(end, start)
    return text[start : stop if stop >= 0 else None]


def _stat_value(fd: int, key: bytes) -> int:
    value = field_value(os.pread(fd, 16384, 0), key + b" ")
    return 0 if value is None else int(value)


class CgroupReader:
    """Open cgroup files of one container process; close() when the container stops."""

    def __init__(
        self,
        pid: int,
        root: Path = CGROUP_ROOT,
        proc: Path = PROC,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.version = cgroup_version(root)
        self._clock = clock
        self._inactive, self._inactive_at, self._usage_at_stat = 0, float("-inf"), 0
        self._memory, self._memory_at, self._cpu_at_memory = 0, float("-inf"), -1
        paths = self._paths(proc / str(pid) / "cgroup", root)
        self._fds: list[int] = []
        try:
            self._usage = self._open(paths["usage"])
            self._stat = self._open(paths["stat"])
            self._cpu = self._open(paths["cpu"])
        except OSError:
            self.close()
            raise

    def _open(self, path: Path) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._fds.append(fd)
        return fd

    def _paths(self, membership: Path, root: Path) -> dict[str, Path]:
        groups: dict[str, str] = {}
        for line in membership.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                groups[controller] = path.lstrip("/")
        if self.version == 2:
            base = root / groups[""]
            return {
                "usage": base / "memory.current",
                "stat": base / "memory.stat",
                "cpu": base / "cpu.stat",
            }
        memory = root / "memory" / groups["memory"]
        return {
            "usage": memory / "memory.usage_in_bytes",
            "stat": memory / "memory.stat",
            "cpu": root / "cpuacct" / groups["cpuacct"] / "cpuacct.usage",
        }

    def memory_bytes(self, now: float | None = None) -> int:
        """Memory in use minus reclaimable page cache (what `docker stats` shows); the
        page cache figure is read again when the usage moved (see the module). `now`: a
        reading of the reader's clock the caller already took (a sample of many
        containers)."""
        usage = _read_int(self._usage)
        if now is None:
            now = self._clock()
        moved = usage - self._usage_at_stat
        if now - self._inactive_at >= MEMORY_STAT_INTERVAL or not (
            -MEMORY_STAT_MOVE <= moved <= MEMORY_STAT_MOVE
        ):
            key = b"inactive_file" if self.version == 2 else b"total_inactive_file"
            self._inactive, self._inactive_at = _stat_value(self._stat, key), now
            self._usage_at_stat = usage
        return usage - self._inactive if usage > self._inactive else 0

    def read(self, now: float) -> tuple[int, int]:
        """(CPU time used so far in ns, memory_bytes()) at `now` (a reading of the
        reader's clock); the memory is read again only when the CPU time moved since
        it was, or after MEMORY_IDLE_INTERVAL (see the module)."""
        cpu = self.cpu_ns()
        if cpu != self._cpu_at_memory or now - self._memory_at >= MEMORY_IDLE_INTERVAL:
            self._memory, self._memory_at = self.memory_bytes(now), now
            self._cpu_at_memory = cpu
        return cpu, self._memory

    def cpu_ns(self) -> int:
        """Total CPU time the container has used, in nanoseconds."""
        if self.version == 2:
            return _stat_value(self._cpu, b"usage_usec") * 1000
        return _read_int(self._cpu)

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()


class NetDevReader:
    """Bytes received/sent by a process's network namespace (all but loopback)."""

    def __init__(self, pid: int, proc: Path = PROC) -> None:
        self._fd = os.open(proc / str(pid) / "net" / "dev", os.O_RDONLY | os.O_CLOEXEC)

    def devices(self) -> int:
        """How many devices the namespace has besides loopback."""
        lines = os.pread(self._fd, 65536, 0).split(b"\n")[2:]
        return sum(1 for line in lines if b":" in line and line.split(b":")[0].strip() != b"lo")

    def read(self) -> tuple[int, int]:
        rx = tx = 0
        # Two header lines, then "iface: rx_bytes packets ... (8 rx fields) tx_bytes ...".
        for line in os.pread(self._fd, 65536, 0).split(b"\n")[2:]:
            name, _, rest = line.partition(b":")
            if not rest or name.strip() == b"lo":
                continue
            fields = rest.split(None, 9)  # no further: the rest is never used
            rx += int(fields[0])
            tx += int(fields[8])
        return rx, tx

    def close(self) -> None:
        os.close(self._fd)
