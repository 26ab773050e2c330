"""Servers' resource stats as the wire shows them (`ServerStats`): a server's latest
container sample, zeros for a server that is not running."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from agent.fleet.server import ManagedServer
from agent.stats.sampler import ContainerSample
from protos import agent_pb2 as pb


def server_stats(
    server: ManagedServer, sample: ContainerSample | None, stats: pb.ServerStats | None = None
) -> pb.ServerStats:
    """`server`'s stats, written into `stats` when given (an empty message)."""
    if stats is None:
        stats = pb.ServerStats()
    stats.id = server.id
    stats.state = server.current_status().state
    if sample is not None and stats.state != pb.SERVER_STATE_OFFLINE:
        stats.memory_bytes = sample.memory_bytes
        stats.memory_limit_bytes = sample.memory_limit_bytes
        stats.cpu_absolute = sample.cpu_absolute
        stats.network.rx_bytes = sample.rx_bytes
        stats.network.tx_bytes = sample.tx_bytes
        stats.disk_bytes = sample.disk_bytes
        stats.uptime_ms = sample.uptime_ms
    return stats


def add_server_stats(
    target: RepeatedCompositeFieldContainer[pb.ServerStats],
    servers: Iterable[ManagedServer],
    samples: Mapping[str, ContainerSample],
) -> None:
    """Append the stats of every one of `servers` to `target`, filled in place: copying
    100 of them into a heartbeat costs more than building them."""
    for server in servers:
        server_stats(server, samples.get(server.id), target.add())
