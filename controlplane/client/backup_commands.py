"""`encedeus backups ls | create | restore | download APP [BACKUP]`: an app's backups
(docs/stateful.md). BACKUP is a backup's id, id prefix or name."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import Any

from controlplane.client.api import ApiClient, ClientError
from controlplane.client.commands import add_command, client_for, out, resolve_deployment
from controlplane.client.file_commands import download_to
from controlplane.client.render import age, field, table

WAIT_POLL_SECONDS = 1.0


def _base(client: ApiClient, app: str) -> str:
    return f"/v1/deployments/{resolve_deployment(client, app)['id']}/backups"


def _size(row: Mapping[str, Any]) -> str:
    size = row.get("size_bytes")
    if size is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _find(client: ApiClient, base: str, wanted: str) -> dict[str, Any]:
    answer = client.call("GET", base, query={"limit": 100})
    rows = answer.get("backups", [])
    exact = [r for r in rows if wanted in (r.get("id"), r.get("name"))]
    matches = exact or [r for r in rows if str(r.get("id", "")).startswith(wanted)]
    if len(matches) == 1:
        return dict(matches[0])
    if not matches:
        raise ClientError(f"no backup named {wanted!r}", status=404)
    raise ClientError(f"{wanted!r} matches {len(matches)} backups; use the id")


def list_backups(args: argparse.Namespace) -> int:
    """A table of the app's backups, newest first."""
    client = client_for(args)
    answer = client.call("GET", _base(client, args.app), query={"limit": 100})
    table(
        answer.get("backups", []),
        [
            ("ID", lambda r: str(r.get("id", ""))[:8]),
            ("NAME", field("name")),
            ("STATE", field("state")),
            ("SIZE", _size),
            ("TAKEN", lambda r: age(r.get("completed_at") or r.get("created_at"))),
            ("LOCKED", lambda r: "yes" if r.get("locked") else ""),
            ("CHECKSUM", lambda r: str(r.get("checksum") or "")[:19]),
            ("ERROR", field("error")),
        ],
        sys.stdout,
    )
    return 0


def _wait(client: ApiClient, base: str, backup_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        backup: dict[str, Any] = client.call("GET", f"{base}/{backup_id}")
        if backup.get("state") in ("completed", "failed") or time.monotonic() > deadline:
            return backup
        time.sleep(WAIT_POLL_SECONDS)


def create_backup(args: argparse.Namespace) -> int:
    """Back up the app now and wait until it is written (unless --no-wait)."""
    client = client_for(args)
    base = _base(client, args.app)
    body: dict[str, Any] = {"locked": args.lock, "ordinal": args.replica}
    if args.name:
        body["name"] = args.name
    backup = client.call("POST", base, body)
    if not args.no_wait:
        backup = _wait(client, base, backup["id"], args.timeout)
    out(f"backup {backup.get('name')} ({str(backup.get('id'))[:8]}): {backup.get('state')}")
    if backup.get("state") == "failed":
        raise ClientError(f"the backup failed: {backup.get('error')}")
    return 0


def restore_backup(args: argparse.Namespace) -> int:
    """Put a backup's files back (the server is stopped for it, then started again)."""
    client = client_for(args)
    base = _base(client, args.app)
    backup = _find(client, base, args.backup)
    answer = client.call("POST", f"{base}/{backup['id']}/restore", {"wipe": args.wipe})
    out(f"{answer.get('message', 'restore started')}: {backup.get('name')}")
    return 0


def download_backup(args: argparse.Namespace) -> int:
    """Download a backup as .tar.gz straight from the agent."""
    client = client_for(args)
    base = _base(client, args.app)
    backup = _find(client, base, args.backup)
    signed = client.call("GET", f"{base}/{backup['id']}/download")
    local = args.output or f"{args.app}-{backup.get('name')}.tar.gz"
    if download_to(signed["url"], local):
        out(f"{backup.get('name')} -> {local}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add `backups` and its subcommands."""
    backups = subparsers.add_parser("backups", help="an app's backups")
    sub = backups.add_subparsers(dest="backups_command", required=True)
    parser = add_command(sub, "ls", list_backups, "list an app's backups")
    parser.add_argument("app", help="app name or id")
    parser = add_command(sub, "create", create_backup, "back up an app now")
    parser.add_argument("app", help="app name or id")
    parser.add_argument("--name", help="a name for the backup (default: the time)")
    parser.add_argument("--lock", action="store_true", help="keep it from retention and rm")
    parser.add_argument("--replica", type=int, default=0, help="which replica (default 0)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for it")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
    parser = add_command(sub, "restore", restore_backup, "restore a backup into the app")
    parser.add_argument("app", help="app name or id")
    parser.add_argument("backup", help="backup id, id prefix or name")
    parser.add_argument("--wipe", action="store_true", help="empty the data directory first")
    parser = add_command(sub, "download", download_backup, "download a backup as .tar.gz")
    parser.add_argument("app", help="app name or id")
    parser.add_argument("backup", help="backup id, id prefix or name")
    parser.add_argument("-o", "--output", help="file to write (- for stdout)")
