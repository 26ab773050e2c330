"""Cgroup v1 and v2 file parsing, on fake hierarchies (this machine has only one)."""

from __future__ import annotations

from pathlib import Path

from agent.stats.cgroup import (
    MEMORY_IDLE_INTERVAL,
    MEMORY_STAT_INTERVAL,
    MEMORY_STAT_MOVE,
    CgroupReader,
    NetDevReader,
    cgroup_version,
)

HEADER = "Inter-|   Receive  |  Transmit\n face |bytes packets ...|bytes packets ...\n"
# Per interface: 8 receive fields (bytes first), then 8 transmit fields (bytes first).
NET_DEV = HEADER + "".join(
    f"{name}: {rx} 10 0 0 0 0 0 0 {tx} 8 0 0 0 0 0 0\n"
    for name, rx, tx in [("    lo", 999999, 999999), ("  eth0", 1500, 700), ("  eth1", 500, 300)]
)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v1(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(
        proc / "42" / "cgroup",
        "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n",
    )
    memory = root / "memory" / "docker" / "abc"
    write(memory / "memory.usage_in_bytes", "10485760\n")
    write(memory / "memory.stat", "cache 4096\ninactive_file 1\ntotal_inactive_file 2097152\n")
    write(root / "cpuacct" / "docker" / "abc" / "cpuacct.usage", "123456789\n")
    assert cgroup_version(root) == 1
    reader = CgroupReader(42, root, proc)
    assert reader.memory_bytes() == 10485760 - 2097152
    assert reader.cpu_ns() == 123456789
    write(memory / "memory.usage_in_bytes", "20971520\n")
    assert reader.memory_bytes() == 20971520 - 2097152  # re-read through the open file
    reader.close()


def test_cgroup_v2(tmp_path: Path) -> None:
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(root / "cgroup.controllers", "cpu memory pids\n")
    write(proc / "7" / "cgroup", "0::/system.slice/docker-abc.scope\n")
    group = root / "system.slice" / "docker-abc.scope"
    write(group / "memory.current", "8388608\n")
    write(group / "memory.stat", "anon 100\nfile 200\ninactive_file 1048576\nactive_file 5\n")
    write(group / "cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    assert cgroup_version(root) == 2
    reader = CgroupReader(7, root, proc)
    assert reader.memory_bytes() == 8388608 - 1048576
    assert reader.cpu_ns() == 2_500_000
    reader.close()


def _group(tmp_path: Path, usage: int) -> tuple[Path, Path]:
    """A v2 cgroup `c` of process 7 using `usage` bytes (100 of them inactive page
    cache) and 1 µs of CPU: the (root, proc) to read it from."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc"
    write(root / "cgroup.controllers", "memory\n")
    write(proc / "7" / "cgroup", "0::/c\n")
    write(root / "c" / "memory.current", f"{usage}\n")
    write(root / "c" / "memory.stat", "inactive_file 100\n")
    write(root / "c" / "cpu.stat", "usage_usec 1\n")
    return root, proc


def test_memory_stat_is_read_again_only_after_its_interval(tmp_path: Path) -> None:
    root, proc = _group(tmp_path, 1000)
    now = [50.0]
    reader = CgroupReader(7, root, proc, clock=lambda: now[0])
    assert reader.memory_bytes() == 900
    write(root / "c" / "memory.current", "2000\n")
    write(root / "c" / "memory.stat", "inactive_file 700\n")
    now[0] += MEMORY_STAT_INTERVAL - 0.1
    assert reader.memory_bytes() == 1900  # usage is fresh, the page cache figure kept
    now[0] += 0.1
    assert reader.memory_bytes() == 1300
    reader.close()


def test_memory_stat_is_read_again_when_the_usage_moved(tmp_path: Path) -> None:
    usage = 64 * MEMORY_STAT_MOVE
    root, proc = _group(tmp_path, usage)
    now = [50.0]
    reader = CgroupReader(7, root, proc, clock=lambda: now[0])
    assert reader.memory_bytes() == usage - 100
    write(root / "c" / "memory.stat", "inactive_file 700\n")
    write(root / "c" / "memory.current", f"{usage + MEMORY_STAT_MOVE}\n")
    assert reader.memory_bytes() == usage + MEMORY_STAT_MOVE - 100  # within the move
    write(root / "c" / "memory.current", f"{usage - MEMORY_STAT_MOVE - 1}\n")
    assert reader.memory_bytes() == usage - MEMORY_STAT_MOVE - 1 - 700  # moved: read
    write(root / "c" / "memory.stat", "inactive_file 900\n")
    write(root / "c" / "memory.current", f"{usage + 1}\n")  # moved from the last read
    assert reader.memory_bytes() == usage + 1 - 900
    reader.close()


def test_net_dev_sums_all_but_loopback(tmp_path: Path) -> None:
    write(tmp_path / "9" / "net" / "dev", NET_DEV)
    reader = NetDevReader(9, tmp_path)
    assert reader.read() == (2000, 1000)
    reader.close()


def test_the_usage_is_read_again_when_the_cpu_moved_or_after_its_interval(
    tmp_path: Path,
) -> None:
    root, proc = _group(tmp_path, 1000)
    now = 50.0
    reader = CgroupReader(7, root, proc)
    assert reader.read(now) == (1000, 900)
    write(root / "c" / "memory.current", "2000\n")  # reclaim, or an interrupt's charge
    now += MEMORY_IDLE_INTERVAL - 1
    assert reader.read(now) == (1000, 900)  # idle: the usage it had
    write(root / "c" / "cpu.stat", "usage_usec 2\n")
    assert reader.read(now) == (2000, 1900)  # it ran: read again
    write(root / "c" / "memory.current", "3000\n")
    now += MEMORY_IDLE_INTERVAL - 1
    assert reader.read(now) == (2000, 1900)
    now += 1
    assert reader.read(now) == (2000, 2900)  # idle for the whole interval: read again
    reader.close()
