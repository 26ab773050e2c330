"""The allocatable disk the scheduler sees: the row's (from enrolment), or what the
connected agent reports now (nodes enrolled before agents reported it)."""

from __future__ import annotations

from typing import cast

from controlplane.agents import AgentPool
from controlplane.agents.pool import NodeObservation
from controlplane.db.tables import Node
from controlplane.reconciler.world import node_view
from protos import agent_pb2 as pb


class _Pool:
    """The two things node_view reads of the agent pool."""

    def __init__(self, observation: NodeObservation | None) -> None:
        self._observation = observation

    def state(self, node_id: str) -> str:
        return "ready"

    def observation(self, node_id: str) -> NodeObservation | None:
        return self._observation


def test_the_connected_agents_report_wins_over_the_enrolment_row() -> None:
    row = Node(name="n1", status="ready", disk_bytes=0)
    assert node_view(row, cast(AgentPool, _Pool(None))).capacity.disk_bytes == 0
    info = pb.NodeInfo(fingerprint=pb.Fingerprint(allocatable_disk_bytes=5 * 2**30))
    live = cast(AgentPool, _Pool(NodeObservation(info=info)))
    assert node_view(row, live).capacity.disk_bytes == 5 * 2**30
    row.disk_bytes = 2 * 2**30  # an agent that reports none keeps the row's
    silent = cast(AgentPool, _Pool(NodeObservation(info=pb.NodeInfo())))
    assert node_view(row, silent).capacity.disk_bytes == 2 * 2**30
