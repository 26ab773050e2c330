"""Domain values to their protobuf messages."""

from __future__ import annotations

from agent.console.history import ConsoleLine
from agent.stats.host import NodeFingerprint
from agent.stats.host_sample import HostSample
from protos import agent_pb2 as pb


def host_stats(sample: HostSample, stats: pb.HostStats | None = None) -> pb.HostStats:
    """`sample` as a message, written into `stats` when given (an empty message)."""
    if stats is None:
        stats = pb.HostStats()
    stats.cpu_percent = sample.cpu_percent
    stats.memory_used_bytes = sample.memory_used_bytes
    stats.memory_total_bytes = sample.memory_total_bytes
    stats.disk_used_bytes = sample.disk_used_bytes
    stats.disk_total_bytes = sample.disk_total_bytes
    stats.load1 = sample.load1
    stats.load5 = sample.load5
    stats.load15 = sample.load15
    stats.uptime_ms = sample.uptime_ms
    return stats


def fingerprint(facts: NodeFingerprint) -> pb.Fingerprint:
    return pb.Fingerprint(
        cpu_count=facts.cpu_count,
        cpu_model=facts.cpu_model,
        memory_bytes=facts.memory_bytes,
        disk_bytes=facts.disk_bytes,
        os=facts.os,
        kernel=facts.kernel,
        docker_version=facts.docker_version,
        agent_version=facts.agent_version,
        hostname=facts.hostname,
        cgroup_version=facts.cgroup_version,
        allocatable_disk_bytes=facts.allocatable_disk_bytes,
    )


def log_line(line: ConsoleLine) -> pb.LogLine:
    return pb.LogLine(time_ms=line.time_ms, stream=line.stream, text=line.text)
