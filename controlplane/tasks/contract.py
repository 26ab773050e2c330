"""What the task runner needs from the rest of the system and hands to it: the ports
it drives (agents, placement), the container spec an agent gets for a task, and the
event that announces a task's state."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.db.tables.tasks import Task, TaskFile
from controlplane.events.bus import Event, EventType
from protos import agent_pb2 as pb

LABEL_TASK = "encedeus.task"
LABEL_OWNER = "encedeus.owner"


class TaskStartError(RuntimeError):
    """The task could not be started; `code`/`status` are what the API answers."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class TaskAgents(Protocol):
    """The agents as the task runner needs them (the real one wraps the gRPC pool)."""

    async def create_server(self, node_id: str, spec: pb.ServerSpec, *, start: bool) -> pb.Server:
        """Create (and start) a server; raises when the node is unreachable or refuses."""
        ...

    async def remove_server(self, node_id: str, server_id: str, *, delete_data: bool) -> None:
        """Remove a server and its data; no error when it is already gone."""
        ...

    def get_logs(
        self, node_id: str, server_id: str, *, tail: int, follow: bool
    ) -> AsyncGenerator[pb.LogLine, None]:
        """The last `tail` lines (0 = all kept), then new ones while it runs if `follow`."""
        ...


TaskCommit = Callable[[AsyncSession, str], Awaitable[None]]


class TaskPlacement(Protocol):
    """Places tasks (the real one: the scheduler and the placement commit point)."""

    async def place(
        self,
        cpu_millis: int,
        memory_bytes: int,
        commit: TaskCommit,
        avoid_nodes: frozenset[str] = frozenset(),
    ) -> str | None:
        """Choose a node with room for the task, never one of `avoid_nodes`, and run
        `commit(session, node_id)` in the transaction that commits the placement, once
        the room is known to be still free; the node id, or None when no node has
        room. What `commit` raises propagates, and then nothing is committed."""
        ...


TASK_FILE_SOURCE = "/v1/remote/task-files/{file_id}"


def input_file(item: TaskFile) -> pb.InputFile:
    """An input file as the agent gets it: never its bytes (they may be GiBs) but
    where the agent fetches them from its control plane, with their size and digest."""
    return pb.InputFile(
        path=item.path,
        mode=item.mode,
        source=TASK_FILE_SOURCE.format(file_id=item.id),
        size=item.size,
        sha256=item.sha256,
    )


def server_spec(task: Task, files: Sequence[TaskFile]) -> pb.ServerSpec:
    """The agent's container spec for `task` with its input files (fetched by the
    agent from `GET /v1/remote/task-files/{id}` while it creates the container)."""
    return pb.ServerSpec(
        id=str(task.id),
        image=task.image,
        command=list(task.command),
        env=dict(task.env),
        resources=pb.Resources(memory_bytes=task.memory_bytes, cpu_millis=task.cpu_millis),
        labels={LABEL_TASK: str(task.id), LABEL_OWNER: str(task.user_id)},
        network_disabled=task.network_disabled,
        files=[input_file(f) for f in files],
        open_stdin=False,
        # Tasks run images already on the node: a pull would outlive the task's
        # placement (deployments pull; see docs/api.md).
        pull_policy=pb.PULL_POLICY_NEVER,
    )


def task_event(task: Task, kind: EventType) -> Event:
    """The bus event announcing `task`'s current state."""
    return Event(
        kind,
        owner_id=str(task.user_id),
        task_id=str(task.id),
        node_id=str(task.node_id) if task.node_id else None,
        data={
            "status": task.status,
            "exit_code": task.exit_code,
            "name": task.name,
            "image": task.image,
            "error_message": task.error_message or None,
        },
    )
