"""`encedeus tasks create | run | ls | start | status | logs | rm`."""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from pathlib import Path
from typing import Any

from controlplane.client.api import ApiClient, ClientError, UploadFile
from controlplane.client.commands import (
    add_command,
    add_container_command_flags,
    client_for,
    container_command,
    out,
    resolve_task,
)
from controlplane.client.deployment_commands import parse_env
from controlplane.client.render import age, field, short_id, table

FINISHED = ("Succeeded", "Failed")


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": args.image, "env": parse_env(args.env)}
    if args.name:
        spec["name"] = args.name
    if command := container_command(args):
        spec["command"] = command
    if args.cpu or args.memory:
        spec["resources"] = {k: v for k, v in (("cpu", args.cpu), ("memory", args.memory)) if v}
    urls = []
    for item in args.fetch:
        url, sep, path = item.partition("=")
        urls.append({"url": url, "path": path} if sep else {"url": url})
    if urls:
        spec["files"] = urls
    return spec


def _uploads(items: list[str]) -> list[UploadFile]:
    uploads = []
    for item in items:
        local, sep, target = item.partition(":")
        source = Path(local)
        try:
            content = source.read_bytes()
        except OSError as exc:
            raise ClientError(f"cannot read {local}: {exc.strerror}") from None
        kind = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        uploads.append(UploadFile("files", target if sep else source.name, content, kind))
    return uploads


def create_task(client: ApiClient, args: argparse.Namespace) -> dict[str, Any]:
    """POST the task (multipart when local files are attached); the created task."""
    spec = _spec(args)
    uploads = _uploads(args.file)
    if uploads:
        answer = client.upload("/v1/tasks", {"task": json.dumps(spec)}, uploads)
    else:
        answer = client.call("POST", "/v1/tasks", spec)
    return dict(answer)


def create(args: argparse.Namespace) -> int:
    """Create a task (and start it with --start)."""
    client = client_for(args)
    task = create_task(client, args)
    out(task["id"])
    if args.start:
        client.call("POST", f"/v1/tasks/{task['id']}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Create, start and follow a task; exit with its exit code."""
    client = client_for(args)
    task = create_task(client, args)
    sys.stderr.write(f"task {task['id']}\n")
    queued = client.call("POST", f"/v1/tasks/{task['id']}")
    if queued:  # 202: no node has room now; it starts when one has
        position, reason = queued.get("queue_position"), queued.get("queue_reason")
        sys.stderr.write(f"task queued at position {position}: {reason}\n")
        _wait_started(client, task["id"], args.timeout)
    for chunk in client.stream(f"/v1/tasks/{task['id']}/logs", query={"follow": "true"}):
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
    status = _wait_finished(client, task["id"], args.timeout)
    sys.stderr.write(f"task {status['status']} (exit code {status.get('exit_code')})\n")
    code = status.get("exit_code")
    return int(code) if isinstance(code, int) and status["status"] in FINISHED else 1


def _wait_started(client: ApiClient, task_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.call("GET", f"/v1/tasks/{task_id}/status")["status"] != "Pending":
            return
        time.sleep(0.5)


def _wait_finished(client: ApiClient, task_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.call("GET", f"/v1/tasks/{task_id}/status")
        if status["status"] in FINISHED or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def list_tasks(args: argparse.Namespace) -> int:
    """A table of your tasks."""
    client = client_for(args)
    query = {"page": args.page, "limit": args.limit, "status": args.status}
    answer = client.call("GET", "/v1/tasks", query=query)
    table(
        answer.get("tasks", []),
        [
            ("ID", lambda r: short_id(r.get("id"))),
            ("NAME", field("name")),
            ("IMAGE", field("image")),
            ("STATUS", field("status")),
            ("EXIT", field("exit_code")),
            ("CREATED", lambda r: age(r.get("created_at"))),
        ],
        sys.stdout,
    )
    return 0


def _task_action(method: str, suffix: str, done: str) -> Any:
    def action(args: argparse.Namespace) -> int:
        client = client_for(args)
        task_id = resolve_task(client, args.task)["id"]
        answer = client.call(method, f"/v1/tasks/{task_id}{suffix}")
        if suffix == "/status":
            table([answer], [(k.upper(), field(k)) for k in _STATUS_FIELDS], sys.stdout)
        else:
            out((answer or {}).get("message") or done)
        return 0

    return action


TASK_HELP = "task id, the id prefix `tasks ls` shows, or the task name"
_STATUS_FIELDS = ("id", "status", "exit_code", "started_at", "finished_at", "error_message")


def logs(args: argparse.Namespace) -> int:
    """Print a task's output (kept after it ends); -f follows while it runs."""
    client = client_for(args)
    query = {"follow": "true" if args.follow else None, "tail": args.tail}
    task_id = resolve_task(client, args.task)["id"]
    for chunk in client.stream(f"/v1/tasks/{task_id}/logs", query=query):
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
    return 0


def _spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image")
    add_container_command_flags(parser)
    parser.add_argument("--name")
    parser.add_argument("--env", "-e", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--file", action="append", default=[], metavar="LOCAL[:PATH]", help="upload a file"
    )
    parser.add_argument(
        "--fetch", action="append", default=[], metavar="URL[=PATH]", help="fetch a URL"
    )
    parser.add_argument("--cpu")
    parser.add_argument("--memory")


def add_commands(subparsers: Any) -> None:
    """Add `tasks` and its subcommands."""
    tasks = subparsers.add_parser("tasks", help="one-shot tasks")
    sub = tasks.add_subparsers(dest="tasks_command", required=True)

    parser = add_command(sub, "create", create, "create a task")
    _spec_flags(parser)
    parser.add_argument("--start", action="store_true", help="start it right away")

    parser = add_command(sub, "run", run, "create, start and follow a task")
    _spec_flags(parser)
    parser.add_argument("--timeout", type=float, default=3600.0)

    parser = add_command(sub, "ls", list_tasks, "list your tasks")
    parser.add_argument("--status", help="Pending, Running, Succeeded or Failed")
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--limit", type=int, default=50)

    for name, method, suffix, done, help_text in (
        ("start", "POST", "", "started", "start a created task"),
        ("status", "GET", "/status", "", "show a task's status and exit code"),
        ("rm", "DELETE", "", "deleted", "delete a task (and its container and logs)"),
    ):
        parser = add_command(sub, name, _task_action(method, suffix, done), help_text)
        parser.add_argument("task", help=TASK_HELP)

    parser = add_command(sub, "logs", logs, "show a task's output")
    parser.add_argument("task", help=TASK_HELP)
    parser.add_argument("--follow", "-f", action="store_true")
    parser.add_argument("--tail", type=int)
