"""Which queued tasks start now: first in, first out, with backfill. Pure.

Tasks carry no duration, so when a running task will end is unknown and the queue
cannot reserve a *time* for a waiting task (as conservative backfill does). It
reserves *nodes* instead, a rule that cannot delay any earlier task:

1. Tasks are taken in submission order (`queued_at`, then id).
2. A task starts when it fits now (free CPU and memory, the placement planner's
   choice) on a ready, non-draining node that no earlier waiting task reserves.
3. A task that cannot start waits, and reserves every schedulable node whose *total*
   capacity could hold it, i.e. every node where it would fit once everything there
   ended. Later tasks may only start (backfill) on the other nodes: nodes where no
   earlier waiting task could fit even if the node were empty.

So a later task never takes room an earlier one could ever use, and every earlier
task starts as soon as its room frees, exactly as if no later task had started.
The price: on a cluster of equal nodes, a waiting task that fits a node when it is
empty blocks backfill everywhere (it waits for room on any node). A task that fits
no enrolled, non-draining node's total capacity can never start
(:func:`can_ever_fit`); the API refuses it with 422 instead of queueing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controlplane.scheduler import Claim, PlacementRequest, Snapshot, plan, snapshot_of

HELD_BACK = "held back: an earlier queued task may need the room that is free"
NO_ROOM = "waiting for capacity: no ready node has {cpu} millicores and {memory} bytes free"
NO_NODE = "waiting for a node large enough to be ready (none is now)"


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A task waiting in the queue, in submission order, and the room it needs."""

    id: str
    cpu_millis: int
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class QueueVerdict:
    """Start `task_id` now avoiding `avoid_nodes` (the nodes earlier waiting tasks
    reserve), or (`start` False) let it wait for `reason`."""

    task_id: str
    start: bool
    avoid_nodes: frozenset[str] = frozenset()
    reason: str = ""


def fits_total(cpu_millis: int, memory_bytes: int, node_cpu: int, node_memory: int) -> bool:
    """Whether a task fits a node's whole capacity (with nothing else on it)."""
    return cpu_millis <= node_cpu and memory_bytes <= node_memory


def can_ever_fit(task: QueuedTask, nodes: Iterable[tuple[int, int]]) -> bool:
    """Whether `task` fits the total (CPU, memory) of one of `nodes` (every enrolled
    node that is not draining)."""
    return any(fits_total(task.cpu_millis, task.memory_bytes, c, m) for c, m in nodes)


def order_queue(snapshot: Snapshot, queued: Sequence[QueuedTask]) -> list[QueueVerdict]:
    """One verdict per queued task, in order (see the module docstring). The tasks
    to start are placed one after the other on `snapshot`, so each later verdict
    sees the room the earlier starts take."""
    verdicts: list[QueueVerdict] = []
    reserved: set[str] = set()
    for task in queued:
        request = PlacementRequest(
            replica_ids=[task.id],
            cpu_millis=task.cpu_millis,
            memory_bytes=task.memory_bytes,
            avoid_nodes=frozenset(reserved),
        )
        placed = plan(snapshot, request).placements
        if placed:
            claim = Claim(placed[0].node_id, task.cpu_millis, task.memory_bytes)
            snapshot = snapshot_of(snapshot.nodes, [claim])
            verdicts.append(QueueVerdict(task.id, True, avoid_nodes=frozenset(reserved)))
            continue
        verdicts.append(QueueVerdict(task.id, False, reason=_wait_reason(snapshot, task, reserved)))
        reserved |= _could_host(snapshot, task)
    return verdicts


def _could_host(snapshot: Snapshot, task: QueuedTask) -> set[str]:
    return {
        node.id
        for node in snapshot.nodes
        if node.schedulable
        and fits_total(task.cpu_millis, task.memory_bytes, node.cpu_millis, node.memory_bytes)
    }


def _wait_reason(snapshot: Snapshot, task: QueuedTask, reserved: set[str]) -> str:
    if not _could_host(snapshot, task):
        return NO_NODE
    unreserved = PlacementRequest(
        replica_ids=[task.id], cpu_millis=task.cpu_millis, memory_bytes=task.memory_bytes
    )
    if reserved and plan(snapshot, unreserved).placements:
        return HELD_BACK
    return NO_ROOM.format(cpu=task.cpu_millis, memory=task.memory_bytes)
