"""Which heartbeats leave the servers out (agent/rpc/heartbeat.py)."""

from __future__ import annotations

from agent.rpc.heartbeat import FULL_HEARTBEAT_EVERY, ShownServers
from protos import agent_pb2 as pb


def test_only_the_same_statuses_again_are_left_out() -> None:
    shown = ShownServers(omit_unchanged=True)
    running = [pb.ServerStatus(id="a", state=pb.SERVER_STATE_RUNNING)]
    assert not shown.unchanged(running)  # a stream's first heartbeat shows them
    assert shown.unchanged(running)
    assert shown.unchanged(list(running))  # the same messages in a new list
    assert not shown.unchanged([pb.ServerStatus(id="a", state=pb.SERVER_STATE_OFFLINE)])
    assert not shown.unchanged([])  # one went
    assert shown.unchanged([])


def test_every_30th_heartbeat_shows_them_anyway() -> None:
    shown = ShownServers(omit_unchanged=True)
    statuses = [pb.ServerStatus(id="a")]
    left_out = [shown.unchanged(statuses) for _ in range(2 * FULL_HEARTBEAT_EVERY + 1)]
    assert [i for i, omit in enumerate(left_out) if not omit] == [
        0,
        FULL_HEARTBEAT_EVERY,
        2 * FULL_HEARTBEAT_EVERY,
    ]


def test_a_consumer_that_did_not_ask_gets_them_every_time() -> None:
    shown = ShownServers(omit_unchanged=False)
    statuses = [pb.ServerStatus(id="a")]
    assert not any(shown.unchanged(statuses) for _ in range(5))
