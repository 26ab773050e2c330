"""/v1/tasks: one-shot containers (seed 003) — create, list, get, start, status, logs,
delete. Every task belongs to its owner; anyone else gets 404."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from controlplane.agents.client import AgentError
from controlplane.api.context import current_user, database, path_uuid, settings
from controlplane.api.errors import ApiError, Conflict, NotFound, Unprocessable
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.repos import with_release_asset
from controlplane.api.task_requests import discard_stored, read_task_request
from controlplane.db.tables.tasks import FAILED, PENDING, Task, TaskFile
from controlplane.events.bus import EventType
from controlplane.quota_enforcement import Claim, enforce_quota
from controlplane.state import AGENT_POOL, EVENT_BUS, TASK_QUEUE, TASK_RUNNER
from controlplane.tasks.contract import task_event
from controlplane.tasks.input_store import InputStore
from controlplane.tasks.inputs import InputFile, TaskSpec
from controlplane.tasks.queue import queue_positions
from controlplane.tasks.runner import TaskRunner

log = get_logger(__name__)

TaskStatus = Literal["Pending", "Running", "Succeeded", "Failed"]


class TaskFileView(BaseModel):
    """An input file of a task (without its content)."""

    id: uuid.UUID
    path: str
    size: int
    mime_type: str
    source_url: str | None


class TaskResources(BaseModel):
    """Limits of the task's container (0 = unlimited)."""

    cpu_millis: int
    memory_bytes: int


class TaskStatusView(BaseModel):
    """Where a task is in its life."""

    id: uuid.UUID
    status: TaskStatus
    exit_code: int | None
    oom_killed: bool
    error_message: str | None
    node_id: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_position: int | None = Field(
        description="1-based place in the queue while the task waits to start"
    )
    queue_reason: str | None = Field(description="why a queued task waits")
    retries: int = Field(description="how often the task is re-queued after losing its node")
    attempts: int = Field(description="how often it was started")


class TaskView(TaskStatusView):
    """A task as its owner sees it."""

    name: str
    image: str
    command: list[str]
    env: dict[str, str]
    resources: TaskResources
    network: bool
    files: list[TaskFileView]
    repo: uuid.UUID | None = Field(description="seed 003: the watched repo whose asset it runs")
    release_asset: str | None
    release_tag: str | None
    updated_at: datetime


class CreatedTask(TaskView):
    """The new task, Pending until started."""

    message: str = "Task successfully added"


class TaskList(BaseModel):
    """A page of the caller's tasks, newest first."""

    tasks: list[TaskView]
    pagination: Pagination


class TaskListQuery(PageQuery):
    """Paging plus an optional status filter."""

    status: TaskStatus | None = None


class DeletedTask(BaseModel):
    """What DELETE removed."""

    message: str = "Task successfully deleted"
    removed_task: TaskView


class LogQuery(BaseModel):
    """`follow=true` keeps streaming while the task runs; `tail` limits the lines."""

    follow: bool = False
    tail: int = 0


def _status_of(task: Task, position: int | None = None) -> dict[str, Any]:
    queued = task.status == PENDING and task.queued_at is not None
    return {
        "queue_position": position if queued else None,
        "queue_reason": (task.queue_reason or None) if queued else None,
        "retries": task.retries,
        "attempts": task.attempts,
        "id": task.id,
        "status": task.status,
        "exit_code": task.exit_code,
        "oom_killed": task.oom_killed,
        "error_message": task.error_message or None,
        "node_id": task.node_id,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
    }


def view_of(task: Task, files: list[TaskFile], position: int | None = None) -> TaskView:
    """The public view of a task row and its files (`position`: its place in the queue)."""
    return TaskView(
        **_status_of(task, position),
        name=task.name,
        image=task.image,
        command=list(task.command),
        env=dict(task.env),
        resources=TaskResources(cpu_millis=task.cpu_millis, memory_bytes=task.memory_bytes),
        network=not task.network_disabled,
        files=[TaskFileView.model_validate(f.describe()) for f in files],
        repo=task.repo_id,
        release_asset=task.release_asset or None,
        release_tag=task.release_tag or None,
        updated_at=task.updated_at,
    )


async def _owned_task(request: web.Request, *, with_files: bool) -> tuple[Task, list[TaskFile]]:
    """The caller's task named by the path (404 otherwise) and, when `with_files`, its
    files (empty otherwise: the status route is polled)."""
    task_id = path_uuid(request)
    owner = current_user(request).id
    async with database(request).session() as session:
        task = (
            await session.exec(
                select(Task).where(col(Task.id) == task_id, col(Task.user_id) == owner)
            )
        ).first()
        if task is None:
            raise NotFound("task not found", code="task_not_found")
        if not with_files:
            return task, []
        files = (
            await session.exec(
                select(TaskFile)
                .where(col(TaskFile.task_id) == task_id)
                .order_by(col(TaskFile.path))
            )
        ).all()
    return task, list(files)


def _runner(request: web.Request) -> TaskRunner:
    runner = request.app.get(TASK_RUNNER)
    if runner is None or AGENT_POOL not in request.app:
        raise ApiError("tasks cannot run: no agents are connected", code="unavailable", status=503)
    return runner


async def create_task(request: web.Request) -> CreatedTask:
    """Create a task from JSON or a multipart form (image, command, env, resources,
    input files uploaded or fetched from http(s) URLs, a watched repo's release asset).
    It stays Pending until started. Uploads are streamed into the input store; if the
    task is not created, nothing of them is kept."""
    store = InputStore(database(request))
    await store.sweep_staged()
    spec, inputs = await read_task_request(request, settings(request))
    try:
        return await _create_with_inputs(request, store, spec, inputs)
    except BaseException:
        await discard_stored(request, inputs)
        raise


async def _create_with_inputs(
    request: web.Request, store: InputStore, spec: TaskSpec, inputs: list[InputFile]
) -> CreatedTask:
    release_tag = ""
    if spec.repo is not None and spec.release_asset is not None:
        inputs[:], release_tag = await with_release_asset(
            request, spec.repo, spec.release_asset, spec.tag, inputs
        )
    # Everything in the store first, in place: the caller discards what `inputs` holds
    # in the store when this fails.
    for index, item in enumerate(inputs):
        if item.stored is None:
            inputs[index] = replace(item, content=b"", stored=await store.store(item.content))
    task = Task(
        user_id=current_user(request).id,
        name=spec.name,
        image=spec.image,
        command=spec.argv,
        env=spec.env,
        cpu_millis=spec.resources.cpu_millis,
        memory_bytes=spec.resources.memory_bytes,
        network_disabled=not spec.network,
        repo_id=spec.repo,
        release_asset=spec.release_asset or "",
        release_tag=release_tag,
        retries=spec.retries,
    )
    async with database(request).transaction() as session:
        await enforce_quota(session, task.user_id, Claim.of(task))
        session.add(task)
        await session.flush()
        files = [await _adopt(session, store, task.id, item) for item in inputs]
        await request.app[EVENT_BUS].record(session, task_event(task, EventType.TASK_CREATED))
    return CreatedTask(**view_of(task, files).model_dump())


async def _adopt(
    session: AsyncSession, store: InputStore, task_id: uuid.UUID, item: InputFile
) -> TaskFile:
    assert item.stored is not None
    return await store.adopt(
        session,
        item.stored.id,
        task_id,
        path=item.path,
        mode=item.mode,
        mime_type=item.mime_type[:255],
        source_url=item.source_url,
    )


async def list_tasks(request: web.Request, query: TaskListQuery) -> TaskList:
    """The caller's tasks, newest first, optionally only those in one status."""
    statement = select(Task).where(col(Task.user_id) == current_user(request).id)
    if query.status is not None:
        statement = statement.where(col(Task.status) == query.status)
    statement = statement.order_by(col(Task.created_at).desc(), col(Task.id))
    async with database(request).session() as session:
        tasks, pagination = await fetch_page(session, statement, query)
        ids = [t.id for t in tasks]
        files = (await session.exec(select(TaskFile).where(col(TaskFile.task_id).in_(ids)))).all()
    by_task: dict[uuid.UUID, list[TaskFile]] = {}
    for item in files:
        if item.task_id is not None:
            by_task.setdefault(item.task_id, []).append(item)
    positions = await queue_positions(database(request), tasks)
    views = [
        view_of(t, sorted(by_task.get(t.id, []), key=lambda f: f.path), positions.get(t.id))
        for t in tasks
    ]
    return TaskList(tasks=views, pagination=pagination)


async def get_task(request: web.Request) -> TaskView:
    """One of the caller's tasks."""
    task, files = await _owned_task(request, with_files=True)
    positions = await queue_positions(database(request), [task])
    return view_of(task, files, positions.get(task.id))


async def start_task(request: web.Request) -> web.StreamResponse:
    """Start a Pending task: 204 when it started on a node now, 202 with its status
    (`queue_position`, `queue_reason`) when it waits in the queue for room. 409 when
    it was started or queued before, 422 `task_never_fits` when no enrolled,
    non-draining node could ever hold it, 502 when its node refused it."""
    task, _ = await _owned_task(request, with_files=False)
    if task.status != PENDING or task.queued_at is not None:
        state = "queued" if task.status == PENDING else task.status
        raise Conflict(f"the task is {state}; only new Pending tasks start", code="task_started")
    _runner(request)
    queue = request.app[TASK_QUEUE]
    reason = await queue.never_fits(task)
    if reason is not None:
        raise Unprocessable(reason, code="task_never_fits")
    if not await queue.enqueue(task):
        raise Conflict("the task was started or queued meanwhile", code="task_started")
    async with database(request).session() as session:
        now = await session.get(Task, task.id)
    if now is None:
        raise NotFound("task not found", code="task_not_found")
    if now.status == FAILED:
        raise ApiError(now.error_message or "the task failed", code="agent_error", status=502)
    if now.status != PENDING:
        return web.Response(status=204)
    positions = await queue_positions(database(request), [now])
    status = TaskStatusView(**_status_of(now, positions.get(now.id)))
    return web.json_response(text=status.model_dump_json(), status=202)


async def task_status(request: web.Request) -> TaskStatusView:
    """Pending (with its queue position and reason when queued), Running, Succeeded
    or Failed, with the exit code and timestamps."""
    task, _ = await _owned_task(request, with_files=False)
    positions = await queue_positions(database(request), [task])
    return TaskStatusView(**_status_of(task, positions.get(task.id)))


async def task_logs(request: web.Request, query: LogQuery) -> web.StreamResponse:
    """The task's output as plain text, streamed; kept after the container is gone."""
    task, _ = await _owned_task(request, with_files=False)
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    runner = request.app.get(TASK_RUNNER)
    if runner is not None and AGENT_POOL in request.app:
        lines = runner.logs(task, follow=query.follow, tail=max(0, query.tail))
        # aclosing: a client that goes away must end the agent's log stream now, not
        # whenever the generator is collected.
        try:
            async with contextlib.aclosing(lines):
                async for line in lines:
                    await response.write(line.encode())
        except AgentError as exc:
            log.info("task_logs_interrupted", task_id=str(task.id), code=exc.code)
    await response.write_eof()
    return response


async def delete_task(request: web.Request) -> DeletedTask:
    """Delete a task: its container (stopped if running), its files and its logs."""
    task, files = await _owned_task(request, with_files=True)
    runner = request.app.get(TASK_RUNNER)
    if runner is not None and AGENT_POOL in request.app:
        try:
            await runner.remove_container(task)
        except AgentError as exc:
            # The record goes anyway: a node that is gone must not pin its tasks forever.
            log.warning("task_container_not_removed", task_id=str(task.id), code=exc.code)
    async with database(request).transaction() as session:
        await session.exec(delete(Task).where(col(Task.id) == task.id))
        await request.app[EVENT_BUS].record(session, task_event(task, EventType.TASK_DELETED))
    return DeletedTask(removed_task=view_of(task, files))
