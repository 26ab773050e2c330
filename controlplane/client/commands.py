"""The `encedeus` client commands: argparse wiring and what every command shares.

Each command is a function `(args) -> exit code` set as the parser's `run` default;
:func:`register_client_commands` adds them all to the `encedeus` parser. Commands talk
to the control plane over its REST API only (see :mod:`controlplane.client.api`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from controlplane.client.api import ApiClient, ClientError
from controlplane.client.credentials import load_credentials

Command = Callable[[argparse.Namespace], int]


def client_for(args: argparse.Namespace) -> ApiClient:
    """An API client for the URL and token from flags, environment or stored login."""
    stored = load_credentials()
    url = getattr(args, "url", None) or stored.url
    return ApiClient(url, stored.token)


def out(text: str = "") -> None:
    """Print a line for people on stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fail(message: str) -> int:
    """Print an error on stderr; the exit code for a failed command."""
    sys.stderr.write(f"error: {message}\n")
    return 1


def guarded(command: Command) -> Command:
    """Turn client errors into a one-line message and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ClientError as exc:
            return fail(str(exc))
        except KeyboardInterrupt:
            return 130

    run.__doc__ = command.__doc__
    return run


def add_command(
    subparsers: Any, name: str, command: Command, help_text: str
) -> argparse.ArgumentParser:
    """A subparser `name` that runs `command`, with the shared `--url` flag."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
    parser.add_argument("--url", help="control plane URL (default: the one logged in to)")
    parser.set_defaults(run=guarded(command))
    return parser


def add_container_command_flags(parser: argparse.ArgumentParser) -> None:
    """`--command/-c STRING` (run by `/bin/sh -c`) and, for the argv form, the words
    after `--` (see :func:`split_container_argv`)."""
    parser.add_argument(
        "--command",
        "-c",
        dest="shell_command",
        metavar="STRING",
        help='a shell command line, run as /bin/sh -c STRING (e.g. "echo a; uname"); '
        "or give the command without a shell after --: -- CMD ARGS...",
    )
    parser.set_defaults(container_argv=[])


def split_container_argv(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """`words` up to the first `--`, and the words after it: a container command in
    argv form, which argparse would otherwise read as options of `encedeus`."""
    if "--" not in words:
        return list(words), []
    cut = list(words).index("--")
    return list(words[:cut]), list(words[cut + 1 :])


def container_command(args: argparse.Namespace) -> list[str] | None:
    """The container's command: `-c STRING` through `/bin/sh -c`, the argv after
    `--` as it is, or None (the image's own command)."""
    if args.shell_command is not None and args.container_argv:
        raise ClientError("give the command either as -c STRING or after --, not both")
    if args.shell_command is not None:
        return ["/bin/sh", "-c", args.shell_command]
    return list(args.container_argv) or None


def register(subparsers: Any) -> None:
    """Add login, register, deploy, ls, logs, scale, stop, start, restart, rm, exec,
    console, files, tasks, nodes, domains, backups to the `encedeus` argument parser."""
    from controlplane.client import (
        backup_commands,
        deployment_commands,
        domain_commands,
        file_commands,
        node_commands,
        session_commands,
        shell_commands,
        task_commands,
        template_commands,
    )

    session_commands.add_commands(subparsers)
    deployment_commands.add_commands(subparsers)
    shell_commands.add_commands(subparsers)
    file_commands.add_commands(subparsers)
    task_commands.add_commands(subparsers)
    node_commands.add_commands(subparsers)
    template_commands.add_commands(subparsers)
    domain_commands.add_commands(subparsers)
    backup_commands.add_commands(subparsers)


def resolve_deployment(client: ApiClient, name_or_id: str) -> dict[str, Any]:
    """The deployment whose id, id prefix or app name is `name_or_id`."""
    return _resolve(client, "deployments", "app_name", name_or_id)


def resolve_task(client: ApiClient, name_or_id: str) -> dict[str, Any]:
    """The task whose id, id prefix (as `tasks ls` shows) or name is `name_or_id`."""
    return _resolve(client, "tasks", "name", name_or_id)


def _resolve(client: ApiClient, kind: str, name_field: str, name_or_id: str) -> dict[str, Any]:
    noun = kind.rstrip("s")
    matches: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = client.call("GET", f"/v1/{kind}", query={"page": page, "limit": 100})
        for item in answer.get(kind, []):
            if item.get("id") == name_or_id:
                return dict(item)
            named = name_or_id and item.get(name_field) == name_or_id
            if named or str(item.get("id", "")).startswith(name_or_id):
                matches.append(item)
        if page >= int(answer.get("pagination", {}).get("total_pages", 1)):
            break
        page += 1
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ClientError(f"no {noun} named {name_or_id!r}", status=404)
    raise ClientError(f"{name_or_id!r} matches {len(matches)} {kind}; use the id")
