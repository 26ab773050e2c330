"""The task state machine on a real database, with the agents faked (units only: the
real agents are in tests/e2e/test_tasks.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator

import pytest

from controlplane.accounts import create_user
from controlplane.db.engine import Database
from controlplane.db.tables.tasks import Task, TaskFile, TaskLog
from controlplane.events.bus import EventBus
from controlplane.quotas import QuotaLimits
from controlplane.tasks import runner as runner_module
from controlplane.tasks.contract import (
    LABEL_TASK,
    TaskAgents,
    TaskCommit,
    TaskPlacement,
    TaskStartError,
)
from controlplane.tasks.runner import TaskRunner
from protos import agent_pb2 as pb

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NODE = str(uuid.uuid4())


class FakeAgents:
    """Records calls; serves canned logs."""

    def __init__(self) -> None:
        self.created: list[pb.ServerSpec] = []
        self.removed: list[str] = []
        self.fail_create = False
        self.lines = ["hello", "world"]

    async def create_server(self, node_id: str, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        if self.fail_create:
            raise RuntimeError("image missing")
        self.created.append(spec)
        return pb.Server(spec=spec, status=pb.ServerStatus(id=spec.id, container_id="c1"))

    async def remove_server(self, node_id: str, server_id: str, *, delete_data: bool) -> None:
        self.removed.append(server_id)

    async def get_logs(
        self, node_id: str, server_id: str, *, tail: int, follow: bool
    ) -> AsyncGenerator[pb.LogLine, None]:
        for text in self.lines:
            yield pb.LogLine(text=text, stream="stdout")


class OneNode:
    """Places every task on NODE, committing it in a transaction of its own."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def place(
        self,
        cpu_millis: int,
        memory_bytes: int,
        commit: TaskCommit,
        avoid_nodes: frozenset[str] = frozenset(),
    ) -> str | None:
        async with self.database.transaction() as session:
            await commit(session, NODE)
        return NODE


@pytest.fixture
def agents() -> FakeAgents:
    return FakeAgents()


@pytest.fixture
def runner(database: Database, agents: FakeAgents) -> TaskRunner:
    typed_agents: TaskAgents = agents
    placement: TaskPlacement = OneNode(database)
    return TaskRunner(database, EventBus(), typed_agents, placement)


async def new_task(database: Database) -> Task:
    user = await create_user(
        database, username=f"u{uuid.uuid4().hex[:8]}", email=f"{uuid.uuid4().hex[:8]}@example.com",
        password="password-123", quota=QuotaLimits(), admin=False,
    )  # fmt: skip
    task = Task(user_id=user.id, image="img", command=["true"])
    async with database.transaction() as session:
        session.add(task)
        await session.flush()
        session.add(TaskFile(task_id=task.id, path="in.txt", size=1, sha256="ab" * 32))
    return task


async def reload(database: Database, task: Task) -> Task:
    async with database.session() as session:
        row = await session.get(Task, task.id)
    assert row is not None
    return row


def exited(task: Task, code: int) -> pb.LifecycleEvent:
    return pb.LifecycleEvent(
        server_id=str(task.id),
        kind=pb.LIFECYCLE_KIND_EXITED,
        exit_code=code,
        status=pb.ServerStatus(id=str(task.id), labels={LABEL_TASK: str(task.id)}),
    )


async def test_start_then_exit_event_succeeds_and_keeps_logs(
    database: Database, runner: TaskRunner, agents: FakeAgents
) -> None:
    task = await new_task(database)
    await runner.start(task)
    spec = agents.created[0]
    assert spec.labels[LABEL_TASK] == str(task.id)
    # The bytes stay out of the message: the agent fetches them by their source.
    assert [(f.path, f.content, f.size, f.sha256) for f in spec.files] == [
        ("in.txt", b"", 1, "ab" * 32)
    ]
    assert spec.files[0].source.startswith("/v1/remote/task-files/")
    assert (await reload(database, task)).status == "Running"

    await runner.on_lifecycle(NODE, exited(task, 0))
    done = await reload(database, task)
    assert (done.status, done.exit_code) == ("Succeeded", 0)
    agents.lines = ["changed after the end"]
    assert [line async for line in runner.logs(done, follow=False)] == ["hello\n", "world\n"]
    async with database.session() as session:
        assert await session.get(TaskLog, task.id) is not None

    with pytest.raises(TaskStartError) as again:
        await runner.start(done)
    assert again.value.status == 409


async def test_missed_exit_is_caught_from_a_heartbeat(
    database: Database, runner: TaskRunner
) -> None:
    task = await new_task(database)
    await runner.start(task)
    status = pb.ServerStatus(
        id=str(task.id), exited=True, exit_code=2, labels={LABEL_TASK: str(task.id)}
    )
    await runner.on_heartbeat(NODE, [status])
    done = await reload(database, task)
    assert (done.status, done.exit_code) == ("Failed", 2)


async def test_refused_create_fails_the_task(
    database: Database, runner: TaskRunner, agents: FakeAgents
) -> None:
    agents.fail_create = True
    task = await new_task(database)
    with pytest.raises(TaskStartError) as refused:
        await runner.start(task)
    assert refused.value.status == 502
    failed = await reload(database, task)
    assert failed.status == "Failed"
    assert "image missing" in failed.error_message


async def test_node_down_fails_running_tasks_and_replicas_are_ignored(
    database: Database, runner: TaskRunner
) -> None:
    task = await new_task(database)
    await runner.start(task)
    replica = pb.LifecycleEvent(
        server_id=str(task.id),
        kind=pb.LIFECYCLE_KIND_EXITED,
        exit_code=0,
        status=pb.ServerStatus(id=str(task.id), labels={"encedeus.replica": "r"}),
    )
    await runner.on_lifecycle(NODE, replica)
    assert (await reload(database, task)).status == "Running"
    assert await runner.nodes_with_running_tasks() == [NODE]
    await runner.on_node_down(NODE)
    failed = await reload(database, task)
    assert failed.status == "Failed"
    assert "went down" in failed.error_message


async def test_kept_logs_are_the_last_bytes_of_a_long_output(
    database: Database, runner: TaskRunner, agents: FakeAgents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "MAX_KEPT_LOG_BYTES", 10)
    agents.lines = ["first", "second", "third", "ünï"]  # 6 + 7 + 6 + 6 bytes with newlines
    task = await new_task(database)
    await runner.start(task)
    await runner.on_lifecycle(NODE, exited(task, 0))
    async with database.session() as session:
        kept = await session.get(TaskLog, task.id)
    assert kept is not None
    assert (kept.content, kept.truncated) == ("ird\nünï\n", True)


async def test_short_logs_are_kept_whole(
    database: Database, runner: TaskRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "MAX_KEPT_LOG_BYTES", 12)
    task = await new_task(database)
    await runner.start(task)
    await runner.on_lifecycle(NODE, exited(task, 0))
    async with database.session() as session:
        kept = await session.get(TaskLog, task.id)
    assert kept is not None
    assert (kept.content, kept.truncated) == ("hello\nworld\n", False)
