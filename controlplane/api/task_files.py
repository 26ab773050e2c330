"""`GET /v1/remote/task-files/{id}`: an agent fetches a task's input file.

The agent sends its node secret (like every /v1/remote call); the file is served only
to the node its task is placed on, while the task is Running (it is marked Running,
with its node, before the agent is asked to create the container). The bytes are
streamed from the input store one chunk at a time (controlplane/tasks/input_store.py),
whatever their size; `Content-Length` is the file's size and `X-Content-SHA256` its
digest (the agent checks both against what CreateServer told it).
"""

from __future__ import annotations

from aiohttp import web

from controlplane.api.context import database, path_uuid
from controlplane.api.errors import NotFound
from controlplane.api.remote import calling_node
from controlplane.db.tables.tasks import RUNNING, Task, TaskFile
from controlplane.tasks.input_store import InputStore

SHA256_HEADER = "X-Content-SHA256"


async def fetch_task_file(request: web.Request) -> web.StreamResponse:
    """Stream an input file of a task Running on the calling node (404 otherwise,
    whether the file does not exist or is not this node's to read)."""
    node = await calling_node(request)
    file_id = path_uuid(request)
    async with database(request).session() as session:
        item = await session.get(TaskFile, file_id)
        task = (
            None if item is None or item.task_id is None else await session.get(Task, item.task_id)
        )
    if item is None or task is None or task.node_id != node.id or task.status != RUNNING:
        raise NotFound("no such input file of a task running on this node", code="file_not_found")
    response = web.StreamResponse(
        headers={"Content-Type": "application/octet-stream", SHA256_HEADER: item.sha256}
    )
    response.content_length = item.size
    await response.prepare(request)
    async for chunk in InputStore(database(request)).read(item.id):
        await response.write(chunk)
    await response.write_eof()
    return response
