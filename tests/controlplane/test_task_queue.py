"""The task queue through the reconciler harness (real database, placement, pool and
runner; fake agents): submission order, the backfill rule, tasks that can never fit,
position and reason, re-queueing after a node loss. The pure rule itself first."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import update
from sqlmodel import col

from common.cancellation import cancel_and_wait
from controlplane.db.tables import Node
from controlplane.db.tables.tasks import Task
from controlplane.scheduler import NodeCapacity, Snapshot
from controlplane.tasks.backfill import HELD_BACK, NO_NODE, QueuedTask, order_queue
from controlplane.tasks.queue import queue_positions
from tests.controlplane.reconciler_harness import MI, ReconcilerHarness


def _node(node_id: str, memory_mib: int, used_mib: int = 0) -> NodeCapacity:
    return NodeCapacity(
        id=node_id,
        cpu_millis=4000,
        memory_bytes=memory_mib * MI,
        port_range=(30000, 30999),
        memory_reserved=used_mib * MI,
    )


def _task(name: str, memory_mib: int) -> QueuedTask:
    return QueuedTask(name, 100, memory_mib * MI)


def test_backfill_only_onto_nodes_no_earlier_waiting_task_could_use() -> None:
    big = _node("big", 2000, used_mib=1000)  # room for 1000 MiB now
    small = _node("small", 500)
    queued = [_task("head", 1500), _task("s1", 300), _task("s2", 400), _task("s3", 100)]
    verdicts = {v.task_id: v for v in order_queue(Snapshot([big, small]), queued)}
    assert not verdicts["head"].start
    # s1 fits "big" now, but the head will need it: it goes to "small".
    assert verdicts["s1"].start
    assert verdicts["s1"].avoid_nodes == {"big"}
    # s2 would fit "big" now only: held back, and it reserves "small" in turn.
    assert not verdicts["s2"].start
    assert verdicts["s2"].reason == HELD_BACK
    # s3 would fit "small" (200 MiB left) but s2 could use "small" once it empties.
    assert not verdicts["s3"].start


def test_tasks_start_in_submission_order_when_nothing_is_reserved() -> None:
    queued = [_task("a", 400), _task("b", 400), _task("c", 400)]
    verdicts = order_queue(Snapshot([_node("n", 1000)]), queued)
    assert [v.start for v in verdicts] == [True, True, False]
    assert order_queue(Snapshot([_node("n", 100)]), [_task("a", 400)])[0].reason == NO_NODE


async def _status(harness: ReconcilerHarness, task: Task) -> tuple[str, int | None, str]:
    row = await harness.task(task.id)
    position = (await queue_positions(harness.database, [row])).get(row.id)
    return row.status, position, row.queue_reason


async def test_queued_tasks_start_in_order_as_capacity_frees(harness: ReconcilerHarness) -> None:
    await harness.add_node("n1", memory_bytes=1000 * MI)
    first, second, third = [await harness.add_task(memory_bytes=600 * MI) for _ in range(3)]
    for task in (first, second, third):
        assert await harness.queue.enqueue(task)
    assert (await harness.task(first.id)).status == "Running"
    status, position, reason = await _status(harness, second)
    assert (status, position) == ("Pending", 1)
    assert reason.startswith("waiting for capacity")
    assert (await _status(harness, third))[:2] == ("Pending", 2)

    await harness.runner.finish(first.id, 0, False)
    await harness.queue.advance()
    assert (await harness.task(second.id)).status == "Running"
    assert (await _status(harness, third))[:2] == ("Pending", 1)


async def test_a_later_small_task_backfills_without_delaying_the_head(
    harness: ReconcilerHarness,
) -> None:
    big = await harness.add_node("big", memory_bytes=2000 * MI)
    small = await harness.add_node("small", memory_bytes=500 * MI)
    holder = await harness.add_task(memory_bytes=1000 * MI)
    await harness.runner.start(holder, avoid_nodes=frozenset({small}))
    head = await harness.add_task(memory_bytes=1500 * MI)
    filler = await harness.add_task(memory_bytes=300 * MI)
    held = await harness.add_task(memory_bytes=400 * MI)
    for task in (head, filler, held):
        await harness.queue.enqueue(task)

    assert (await harness.task(head.id)).status == "Pending"
    backfilled = await harness.task(filler.id)
    assert (backfilled.status, str(backfilled.node_id)) == ("Running", small)
    assert await _status(harness, held) == ("Pending", 2, HELD_BACK)

    await harness.runner.finish(holder.id, 0, False)
    await harness.queue.advance()
    started = await harness.task(head.id)
    assert (started.status, str(started.node_id)) == ("Running", big)


async def test_never_fitting_tasks_are_refused_counting_non_draining_nodes(
    harness: ReconcilerHarness,
) -> None:
    await harness.add_node("n1", memory_bytes=1000 * MI)
    large = await harness.add_node("large", memory_bytes=4000 * MI)
    task = await harness.add_task(memory_bytes=2000 * MI)
    assert await harness.queue.never_fits(task) is None
    await harness.drain(large)
    reason = await harness.queue.never_fits(task)
    assert reason is not None
    assert "2097152000 bytes" in reason
    assert await harness.queue.never_fits(await harness.add_task(memory_bytes=900 * MI)) is None


async def test_a_queued_task_fails_once_its_only_large_node_is_drained(
    harness: ReconcilerHarness,
) -> None:
    await harness.add_node("n1", memory_bytes=1000 * MI)
    large = await harness.add_node("large", memory_bytes=4000 * MI)
    hog = await harness.add_task(memory_bytes=3500 * MI)
    waiting = await harness.add_task(memory_bytes=2000 * MI)
    await harness.queue.enqueue(hog)
    await harness.queue.enqueue(waiting)
    assert (await harness.task(waiting.id)).status == "Pending"
    async with harness.database.transaction() as session:
        await session.exec(
            update(Node).where(col(Node.id) == uuid.UUID(large)).values(draining=True)
        )
    await harness.queue.advance()
    failed = await harness.task(waiting.id)
    assert failed.status == "Failed"
    assert "no enrolled node" in failed.error_message


async def test_a_task_is_requeued_after_node_loss_while_it_has_retries(
    harness: ReconcilerHarness,
) -> None:
    n1 = await harness.add_node("n1")
    n2 = await harness.add_node("n2")
    task = await harness.add_task(memory_bytes=64 * MI, retries=1)
    await harness.queue.enqueue(task)
    first = await harness.task(task.id)
    assert (first.status, first.attempts) == ("Running", 1)
    lost = str(first.node_id)

    harness.fleet.agent(lost).silent = True
    await harness.until(lambda: harness.pool.state(lost) == "down")
    await harness.runner.on_node_down(lost)
    requeued = await harness.task(task.id)
    assert (requeued.status, requeued.node_id) == ("Pending", None)
    assert requeued.queue_reason.startswith("re-queued: the node running the task went down")

    await harness.queue.advance()
    second = await harness.task(task.id)
    survivor = n2 if lost == n1 else n1
    assert (second.status, str(second.node_id), second.attempts) == ("Running", survivor, 2)

    harness.fleet.agent(survivor).silent = True
    await harness.until(lambda: harness.pool.state(survivor) == "down")
    await harness.runner.on_node_down(survivor)
    failed = await harness.task(task.id)
    assert failed.status == "Failed"
    assert "no retries left" in failed.error_message


async def test_without_retries_a_node_loss_fails_the_task(harness: ReconcilerHarness) -> None:
    node = await harness.add_node("n1")
    task = await harness.add_task(memory_bytes=64 * MI)
    await harness.queue.enqueue(task)
    harness.fleet.agent(node).silent = True
    await harness.until(lambda: harness.pool.state(node) == "down")
    await harness.runner.on_node_down(node)
    failed = await harness.task(task.id)
    assert (failed.status, failed.error_message) == (
        "Failed",
        "the node running the task went down",
    )


async def test_a_retry_on_the_node_that_came_back_replaces_its_lost_attempt(
    harness: ReconcilerHarness,
) -> None:
    node = await harness.add_node("n1")
    task = await harness.add_task(memory_bytes=64 * MI, retries=1)
    await harness.queue.enqueue(task)
    agent = harness.fleet.agent(node)
    agent.silent = True
    await harness.until(lambda: harness.pool.state(node) == "down")
    await harness.runner.on_node_down(node)
    agent.silent = False  # back, still holding the lost attempt's container
    await harness.until(lambda: harness.node_reporting(node))

    await harness.queue.advance()
    retried = await harness.task(task.id)
    assert (retried.status, retried.attempts) == ("Running", 2)
    calls = [method for method, server in agent.calls if server == str(task.id)]
    assert calls == ["CreateServer", "RemoveServer", "CreateServer"]


async def test_an_exit_reported_by_the_lost_attempt_s_node_does_not_end_the_retry(
    harness: ReconcilerHarness,
) -> None:
    n1 = await harness.add_node("n1")
    n2 = await harness.add_node("n2")
    task = await harness.add_task(memory_bytes=64 * MI, retries=1)
    await harness.runner.start(task, avoid_nodes=frozenset({n2}))
    harness.fleet.agent(n1).silent = True
    await harness.until(lambda: harness.pool.state(n1) == "down")
    await harness.runner.on_node_down(n1)
    await harness.queue.advance()
    assert str((await harness.task(task.id)).node_id) == n2

    await harness.runner.finish(task.id, 1, False, node_id=n1)
    assert (await harness.task(task.id)).status == "Running"
    await harness.runner.finish(task.id, 0, False, node_id=n2)
    assert (await harness.task(task.id)).status == "Succeeded"


async def test_the_queue_loop_starts_the_next_task_when_one_ends(
    harness: ReconcilerHarness,
) -> None:
    await harness.add_node("n1", memory_bytes=1000 * MI)
    first, second = [await harness.add_task(memory_bytes=600 * MI) for _ in range(2)]
    loop = asyncio.create_task(harness.queue.run())
    try:
        await harness.queue.enqueue(first)
        await harness.queue.enqueue(second)
        await harness.runner.finish(first.id, 0, False)  # publishes task_succeeded
        for _ in range(200):  # well inside the 5 s timer: the event woke the loop
            if (await harness.task(second.id)).status == "Running":
                break
            await asyncio.sleep(0.01)
        assert (await harness.task(second.id)).status == "Running"
    finally:
        await cancel_and_wait(loop)


async def test_the_queue_loop_stops_when_cancelled_as_it_is_woken(
    harness: ReconcilerHarness,
) -> None:
    # CI hung here for 300 s: an event woke the loop in the step its cancel arrived,
    # and asyncio.wait_for (Python 3.11) returned the wake-up instead of the cancel.
    loop = asyncio.create_task(harness.queue.run())
    await asyncio.sleep(0.05)  # the loop waits for a wake-up
    harness.queue.wake()
    loop.cancel()
    done, _ = await asyncio.wait([loop], timeout=5)
    assert done == {loop}
    assert loop.cancelled()
