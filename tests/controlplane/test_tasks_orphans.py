"""Task containers nothing accounts for: a task deleted while its start is in flight
leaves no container behind, and any task container an agent reports without a task
row Running on that node is removed after a grace period (level-triggered)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlmodel import col

from controlplane.db.tables.tasks import FAILED, RUNNING, SUCCEEDED, Task
from controlplane.tasks import wiring
from controlplane.tasks.contract import TaskStartError, server_spec
from tests.controlplane.reconciler_harness import GRACE_SECONDS, MI, ReconcilerHarness


async def _delete_as_the_api_does(harness: ReconcilerHarness, task_id: uuid.UUID) -> None:
    """What DELETE /v1/tasks/{id} does: remove the container (an agent answering
    not_found is fine), then delete the row."""
    await harness.runner.remove_container(await harness.task(task_id))
    async with harness.database.transaction() as session:
        await session.exec(delete(Task).where(col(Task.id) == task_id))


async def test_a_task_deleted_while_its_start_is_in_flight_leaves_no_container(
    harness: ReconcilerHarness,
) -> None:
    node = await harness.add_node("n1")
    agent = harness.fleet.agent(node)
    task = await harness.add_task(memory_bytes=64 * MI)
    agent.hold_creates = asyncio.Event()
    starting = asyncio.create_task(harness.runner.start(task))
    await agent.create_entered.wait()

    await _delete_as_the_api_does(harness, task.id)
    assert str(task.id) not in agent.servers  # the agent had nothing to remove yet
    agent.hold_creates.set()

    with pytest.raises(TaskStartError) as refused:
        await starting
    assert (refused.value.code, refused.value.status) == ("not_found", 404)
    assert str(task.id) not in agent.servers
    assert agent.calls.count(("RemoveServer", str(task.id))) == 2


async def _set(harness: ReconcilerHarness, task_id: uuid.UUID, **values: Any) -> None:
    async with harness.database.transaction() as session:
        await session.exec(update(Task).where(col(Task.id) == task_id).values(**values))


@pytest.mark.parametrize(
    ("row", "exited", "kept"),
    [
        ("deleted", False, False),
        ("on_another_node", False, False),
        ("ended_while_running", False, False),
        ("running_here", False, True),
        ("ended_and_exited", True, True),
    ],
)
async def test_task_containers_without_a_running_row_on_their_node_are_removed(
    harness: ReconcilerHarness, row: str, exited: bool, kept: bool
) -> None:
    node = await harness.add_node("n1")
    other = await harness.add_node("n2")
    agent = harness.fleet.agent(node)
    task = await harness.add_task(memory_bytes=64 * MI)
    await agent.create_server(server_spec(task, []), start=True)
    server_id = str(task.id)
    if exited:
        agent.crash(server_id, exit_code=0)
    placement = {
        "deleted": {},
        "on_another_node": {"status": RUNNING, "node_id": uuid.UUID(other)},
        "ended_while_running": {"status": FAILED, "node_id": uuid.UUID(node)},
        "running_here": {"status": RUNNING, "node_id": uuid.UUID(node)},
        "ended_and_exited": {"status": SUCCEEDED, "node_id": uuid.UUID(node)},
    }[row]
    if row == "deleted":
        async with harness.database.transaction() as session:
            await session.exec(delete(Task).where(col(Task.id) == task.id))
    else:
        await _set(harness, task.id, **placement)

    observation = harness.pool.observation(node)
    assert observation is not None
    await harness.until(lambda: server_id in (observation.servers or {}))
    await wiring._sweep(harness.runner, harness.pool)
    assert server_id in agent.servers  # not before the grace period
    await asyncio.sleep(GRACE_SECONDS)
    await wiring._sweep(harness.runner, harness.pool)
    assert (server_id in agent.servers) is kept
