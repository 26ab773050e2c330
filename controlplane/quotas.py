"""Per-account quotas: what an account uses and whether a change keeps it within limits.

Pure: no database, no HTTP. The shell that reads the rows and locks the account is
:mod:`controlplane.quota_enforcement`.

Usage is counted as reservations, not as what happens to run right now:

- every deployment counts once towards `deployments`, and its *wanted* replicas
  (stopped deployments included) towards `replicas`, and replicas x its per-replica
  CPU, memory and disk towards the totals;
- every task that has not ended (created, queued or running) counts its CPU, memory
  and disk; a task is no deployment and no replica.

A change is refused when it *raises* a resource and the account's usage afterwards is
above that resource's limit. Changes that lower or keep a resource always pass, so an
account above a limit that an admin lowered can still shrink, stop and delete.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Tasks have no disk resource: their work directory is not limited.
TASK_DISK_BYTES_UNTIL_DISK_RESOURCE = 0

#: The unit of each resource, for people reading an error.
UNITS = {
    "deployments": "deployments",
    "replicas": "replicas",
    "cpu_millis": "millicores",
    "memory_bytes": "bytes",
    "disk_bytes": "bytes",
}


class QuotaLimits(BaseModel):
    """The limits of one account; None = unlimited. CPU in millicores (1000 = one
    core), memory and disk in bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: int | None = Field(default=None, ge=0, le=2**31 - 1)
    replicas: int | None = Field(default=None, ge=0, le=2**31 - 1)
    cpu_millis: int | None = Field(default=None, ge=0, le=2**62)
    memory_bytes: int | None = Field(default=None, ge=0, le=2**62)
    disk_bytes: int | None = Field(default=None, ge=0, le=2**62)


@dataclass(frozen=True, slots=True)
class Usage:
    """Amounts of every limited resource (of an account, or of one deployment/task)."""

    deployments: int = 0
    replicas: int = 0
    cpu_millis: int = 0
    memory_bytes: int = 0
    disk_bytes: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: Usage) -> Usage:
        return Usage(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[int, ...]:
        """The amounts in field order."""
        return tuple(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        """`{resource: amount}`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


NOTHING = Usage()


def deployment_usage(
    replicas: int, cpu_millis: int, memory_bytes: int, disk_bytes: int = 0
) -> Usage:
    """What one deployment reserves: itself, its wanted replicas and their resources
    (disk: each replica's volume limit, `resources.disk`)."""
    return Usage(
        deployments=1,
        replicas=replicas,
        cpu_millis=replicas * cpu_millis,
        memory_bytes=replicas * memory_bytes,
        disk_bytes=replicas * disk_bytes,
    )


def task_usage(cpu_millis: int, memory_bytes: int) -> Usage:
    """What one task that has not ended reserves."""
    return Usage(
        cpu_millis=cpu_millis,
        memory_bytes=memory_bytes,
        disk_bytes=TASK_DISK_BYTES_UNTIL_DISK_RESOURCE,
    )


@dataclass(frozen=True, slots=True)
class Excess:
    """One resource a change would take above its limit."""

    resource: str
    limit: int
    usage: int  # the account's usage now
    requested: int  # the account's usage after the change

    def describe(self) -> dict[str, Any]:
        """The error details entry."""
        return {
            "resource": self.resource,
            "limit": self.limit,
            "usage": self.usage,
            "requested": self.requested,
            "unit": UNITS[self.resource],
        }

    def sentence(self) -> str:
        """For people: which resource, its limit and the usage."""
        unit = UNITS[self.resource]
        return (
            f"{self.resource}: limit {self.limit} {unit}, in use {self.usage}, "
            f"this change needs {self.requested}"
        )


def excesses(limits: QuotaLimits, usage: Usage, before: Usage, after: Usage) -> list[Excess]:
    """The resources over their limit if one object's usage goes from `before` to
    `after` while the account as a whole uses `usage` (which includes `before`)."""
    requested = usage - before + after
    found = []
    for name, now in usage.as_dict().items():
        limit = getattr(limits, name)
        wanted = getattr(requested, name)
        if limit is not None and getattr(after, name) > getattr(before, name) and wanted > limit:
            found.append(Excess(name, limit, now, wanted))
    return found
