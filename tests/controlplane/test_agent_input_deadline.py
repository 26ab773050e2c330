"""A CreateServer whose task inputs the agent fetches first gets the time they take,
beyond the ordinary deadline (a multi-GiB input must not fail its task at 15 s)."""

from __future__ import annotations

from controlplane.agents.client import input_fetch_seconds
from protos import agent_pb2 as pb


def test_a_create_with_fetched_inputs_gets_the_time_they_take() -> None:
    files = [
        pb.InputFile(path="a", source="/v1/remote/task-files/1", size=2 * 1024**3),
        pb.InputFile(path="b", content=b"inline", size=0),
    ]
    # 2 GiB at the slowest rate allowed: 128 s beyond the ordinary deadline.
    assert input_fetch_seconds(pb.ServerSpec(id="t", files=files)) == 2 * 1024**3 / (16 * 2**20)
    assert input_fetch_seconds(pb.ServerSpec(id="t", files=files[1:])) == 0
