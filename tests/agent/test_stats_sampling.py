"""The sampler's own logic on plain processes of this host: one worker call per sample
for the containers and the host, figures from one clock reading per sample."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from agent.stats.host import HostMonitor
from agent.stats.host_sample import HostReader, HostSample, cpu_ticks
from agent.stats.sampler import StatsSampler

T = TypeVar("T")


@pytest.fixture
def pid() -> Iterator[int]:
    process = subprocess.Popen(["sleep", "60"])
    yield process.pid
    process.kill()
    process.wait()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions handed to asyncio.to_thread."""
    seen: list[str] = []
    real = asyncio.to_thread

    async def counting(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        seen.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    return seen


async def test_one_worker_call_samples_containers_and_host(
    pid: int, tmp_path: Path, hops: list[str]
) -> None:
    sampler, host = StatsSampler(1 << 30), HostMonitor(tmp_path)
    sampler.run_alongside(host.refresh_quietly)
    sampler.track("s1", pid, 0, tmp_path, 0)
    try:
        samples = await sampler.latest(0.5)
        host_sample = await host.latest(0.5)  # taken beside the containers' sample
        assert list(samples) == ["s1"]
        assert host_sample.memory_total_bytes > 0
        assert len(hops) == 1
        assert await host.latest(0.5) is host_sample
        assert await host.latest(0.0) is not host_sample  # too old: its own call
        assert len(hops) == 2
    finally:
        sampler.close()


async def test_a_failed_host_sample_alongside_leaves_latest_to_take_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hops: list[str]
) -> None:
    def failing(self: HostReader, data_dir: Path) -> HostSample:
        raise OSError("no /proc")

    monkeypatch.setattr(HostReader, "sample", failing)
    host = HostMonitor(tmp_path)
    host.refresh_quietly()  # logged, not raised: the containers' sample goes on
    with pytest.raises(OSError, match="no /proc"):
        await host.latest(0.5)
    assert len(hops) == 1


def test_sample_figures_from_one_clock_reading(pid: int, tmp_path: Path) -> None:
    now = [100.0]
    sampler = StatsSampler(1 << 30, disk_interval_seconds=30.0, clock=lambda: now[0])
    started_ms = int(time.time() * 1000) - 5000
    sampler.track("s1", pid, 0, tmp_path, started_ms)
    (tmp_path / "file").write_bytes(b"x" * 10)
    try:
        first = sampler.sample()["s1"]
        assert first.cpu_absolute == 0.0  # no previous reading yet
        assert 5000 <= first.uptime_ms < 65000
        assert first.memory_limit_bytes == 1 << 30
        assert first.memory_bytes >= 0
        assert first.disk_bytes == 10
        (tmp_path / "file").write_bytes(b"x" * 20)
        second = sampler.sample()["s1"]
        assert second.cpu_absolute >= 0.0
        assert second.disk_bytes == 10  # the sampler's clock has not moved on 30 s
        now[0] += 30.0
        assert sampler.sample()["s1"].disk_bytes == 20
    finally:
        sampler.close()


def test_host_uptime_is_the_kernels(tmp_path: Path) -> None:
    reader = HostReader()
    try:
        uptime_ms = reader.sample(tmp_path).uptime_ms
    finally:
        reader.close()
    proc_ms = float(Path("/proc/uptime").read_text().split()[0]) * 1000
    assert abs(uptime_ms - proc_ms) < 1000


def test_host_figures_are_psutils(tmp_path: Path) -> None:
    reader = HostReader()
    try:
        first = reader.sample(tmp_path)
        memory, disk = psutil.virtual_memory(), psutil.disk_usage(str(tmp_path))
        assert first.cpu_percent == 0.0  # no previous reading yet
        assert first.memory_total_bytes == memory.total
        used = memory.total - memory.available
        assert abs(first.memory_used_bytes - used) < 0.05 * memory.total
        assert first.disk_total_bytes == disk.total
        assert abs(first.disk_used_bytes - disk.used) < 0.05 * disk.total
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            pass  # a busy CPU for the next figure
        busy = reader.sample(tmp_path).cpu_percent
        assert 0.0 < busy <= 100.0 * (psutil.cpu_count() or 1)
    finally:
        reader.close()


def test_cpu_ticks_leave_out_idle_and_iowait() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    line = b"cpu  100 5 50 1000 20 3 2 1 40 0\ncpu0 1 2 3\n"
    assert cpu_ticks(line) == (161, 1181)  # guest time is already in user


def test_host_monitor_reopens_after_close(tmp_path: Path) -> None:
    host = HostMonitor(tmp_path)
    first = host.refresh()
    host.close()
    assert host.refresh().memory_total_bytes == first.memory_total_bytes
    host.close()
