"""Host resource use from /proc files kept open (blocking).

A heartbeat takes one host sample a second. psutil re-opens and parses the whole of
/proc/stat and /proc/meminfo on each call (about 0.5 ms of CPU a sample on these
machines); a pread of each file kept open and a look for the two or three figures
needed costs a quarter of that. The figures are psutil's: CPU busy time is everything
but idle and iowait (guest time is already in user and nice), memory in use is
MemTotal less MemAvailable, disk use is statvfs' blocks less the free ones.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from agent.stats.cgroup import field_value

_STAT_FIELDS = 8  # user nice system idle iowait irq softirq steal (guest: in user, nice)


@dataclass(frozen=True, slots=True)
class HostSample:
    """Host resource use (cpu_percent: 100 = one core)."""

    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    load1: float
    load5: float
    load15: float
    uptime_ms: int


def _meminfo_kib(text: bytes, key: bytes) -> int:
    value = field_value(text, key + b":", b"kB")
    if value is None:
        raise ValueError(f"/proc/meminfo has no {key.decode()}")
    return int(value)


def cpu_ticks(stat: bytes) -> tuple[int, int]:
    """(busy, total) ticks of all CPUs from /proc/stat's first line."""
    fields = [int(field) for field in stat[: stat.index(b"\n")].split()[1 : 1 + _STAT_FIELDS]]
    total = sum(fields)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return total - idle, total


class HostReader:
    """Samples the host; the CPU figure is averaged since the previous sample (the
    first one: 0). One sample at a time (HostMonitor holds a lock); close() when done."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._cpus = os.cpu_count() or 1
        self._stat = os.open(proc / "stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._meminfo = os.open(proc / "meminfo", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(self._stat)
            raise
        self._busy, self._total = cpu_ticks(self._read(self._stat, 1024))

    @staticmethod
    def _read(fd: int, size: int) -> bytes:
        # A single_open file: one read at offset 0 has it all when `size` suffices.
        return os.pread(fd, size, 0)

    def sample(self, data_dir: Path) -> HostSample:
        """Current host use (blocking)."""
        busy, total = cpu_ticks(self._read(self._stat, 1024))
        elapsed = total - self._total
        share = (busy - self._busy) / elapsed if elapsed > 0 else 0.0
        self._busy, self._total = busy, total
        meminfo = self._read(self._meminfo, 8192)
        memory_total = _meminfo_kib(meminfo, b"MemTotal") * 1024
        available = _meminfo_kib(meminfo, b"MemAvailable") * 1024
        disk = os.statvfs(data_dir if data_dir.exists() else "/")
        load1, load5, load15 = os.getloadavg()
        return HostSample(
            cpu_percent=100.0 * min(max(share, 0.0), 1.0) * self._cpus,
            memory_used_bytes=memory_total - available,
            memory_total_bytes=memory_total,
            disk_used_bytes=(disk.f_blocks - disk.f_bfree) * disk.f_frsize,
            disk_total_bytes=disk.f_blocks * disk.f_frsize,
            load1=load1,
            load5=load5,
            load15=load15,
            # The clock /proc/uptime shows (psutil.boot_time() has whole seconds).
            uptime_ms=int(time.clock_gettime(time.CLOCK_BOOTTIME) * 1000),
        )

    def close(self) -> None:
        os.close(self._stat)
        os.close(self._meminfo)
