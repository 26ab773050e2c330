"""The sampler's own logic on plain processes of this host: one worker call per sample
for the containers and the host, figures from one clock reading per sample."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import agent.stats.host
from agent.stats.host import HostMonitor, HostSample
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
    def failing(data_dir: Path) -> HostSample:
        raise OSError("no /proc")

    monkeypatch.setattr(agent.stats.host, "host_sample", failing)
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
    uptime_ms = agent.stats.host.host_sample(tmp_path).uptime_ms
    proc_ms = float(Path("/proc/uptime").read_text().split()[0]) * 1000
    assert abs(uptime_ms - proc_ms) < 1000
