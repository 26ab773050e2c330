"""The loop that feeds agent signals to the task runner (runner and pool faked)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import pytest

from controlplane.agents.pool import NodeSignal
from controlplane.tasks import wiring


class CountingRunner:
    def __init__(self) -> None:
        self.sweeps = 0
        self.downs = 0

    async def nodes_with_running_tasks(self) -> list[str]:
        self.sweeps += 1
        return []

    async def on_node_down(self, node_id: str) -> None:
        self.downs += 1


class NoNodes:
    def node_ids(self) -> list[str]:
        return []


async def test_a_steady_stream_of_signals_does_not_starve_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wiring, "SWEEP_SECONDS", 0.05)
    runner = CountingRunner()
    signals: asyncio.Queue[NodeSignal] = asyncio.Queue()
    consumer = asyncio.create_task(
        wiring._consume(signals, cast(Any, runner), cast(Any, NoNodes()))
    )
    try:
        for _ in range(40):  # one signal every 10 ms for 0.4 s, well inside a sweep period
            signals.put_nowait(NodeSignal("n1", "down"))
            await asyncio.sleep(0.01)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert runner.downs >= 30
    assert runner.sweeps >= 3
