"""`encedeus files ls|get|put|rm APP:PATH`: a replica's files (docs/protocols/files.md).

Listing and removal go through the control plane. `get` and `put` ask it for a signed
agent URL and stream the bytes to or from the agent directly, a chunk at a time, so a
multi-GiB file needs no more memory than a small one. `put --resume` asks the agent how
many bytes it already holds (`HEAD`) and sends only the rest (`PATCH ?offset=`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import posixpath
import shutil
import sys
from typing import Any, BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

from controlplane.client.api import ApiClient, ClientError, error_from
from controlplane.client.commands import add_command, client_for, out, resolve_deployment

CHUNK = 1024 * 1024
TRANSFER_TIMEOUT = 300.0


def split_target(target: str) -> tuple[str, str]:
    """`APP:PATH` as (app, path); a bare `APP` is its directory's root."""
    app, sep, path = target.partition(":")
    if not app:
        raise ClientError(f"name the app: APP:PATH, not {target!r}")
    return app, (path or "/") if sep else "/"


def _files_path(client: ApiClient, app: str, replica: int) -> str:
    deployment = resolve_deployment(client, app)
    return f"/v1/deployments/{deployment['id']}/replicas/{replica}/files"


def list_files(args: argparse.Namespace) -> int:
    """List a directory of a replica's files."""
    client = client_for(args)
    app, path = split_target(args.target)
    answer = client.call("GET", _files_path(client, app, args.replica), query={"path": path})
    for entry in answer.get("entries", []):
        name = entry["name"] + ("/" if entry["type"] == "directory" else "")
        if entry.get("link_target") is not None:
            name += f" -> {entry['link_target']}"
        out(f"{entry['mode']:>5} {entry['size']:>12} {name}")
    return 0


def remove_file(args: argparse.Namespace) -> int:
    """Remove a file or a directory tree."""
    client = client_for(args)
    app, path = split_target(args.target)
    client.call("POST", f"{_files_path(client, app, args.replica)}/delete", {"path": path})
    out(f"removed {path}")
    return 0


def get_file(args: argparse.Namespace) -> int:
    """Download a file straight from the agent to LOCAL (default: its name; - = stdout)."""
    client = client_for(args)
    app, path = split_target(args.target)
    base = _files_path(client, app, args.replica)
    signed = client.call("GET", f"{base}/download-url", query={"path": path})
    local = args.local or posixpath.basename(path.rstrip("/")) or "download"
    if download_to(signed["url"], local):
        out(f"{path} -> {local} ({os.path.getsize(local)} bytes)")
    return 0


def download_to(url: str, local: str) -> bool:
    """Stream a signed agent URL into the file `local` (`-`: stdout; then False)."""
    request = Request(url, headers={"User-Agent": "encedeus-cli"})  # noqa: S310
    try:
        with urlopen(request, timeout=TRANSFER_TIMEOUT) as response:  # noqa: S310
            if local == "-":
                shutil.copyfileobj(response, sys.stdout.buffer, CHUNK)
                return False
            with open(local, "wb") as target:
                shutil.copyfileobj(response, target, CHUNK)
    except HTTPError as exc:
        raise error_from(exc) from None
    except (URLError, OSError) as exc:
        raise ClientError(f"download failed: {exc}") from None
    return True


def put_file(args: argparse.Namespace) -> int:
    """Upload LOCAL straight to the agent; --resume continues an interrupted upload."""
    client = client_for(args)
    app, path = split_target(args.target)
    if path.endswith("/"):
        path += os.path.basename(args.local)
    base = _files_path(client, app, args.replica)
    signed = client.call("POST", f"{base}/upload-url", {"path": path})
    with open(args.local, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        offset = _stored_size(signed["url"]) if args.resume else None
        if offset is not None and offset > size:
            raise ClientError(f"the server holds {offset} bytes, more than {args.local} has")
        if offset is None:
            answer = _send(signed["url"], "PUT", source, size)
        else:
            source.seek(offset)
            answer = _send(f"{signed['url']}&offset={offset}", "PATCH", source, size - offset)
    out(f"{args.local} -> {path} ({answer.get('size', size)} bytes)")
    return 0


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"the signed URL is not http(s): {url}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=TRANSFER_TIMEOUT)
    return connection, f"{parts.path}?{parts.query}"


def _stored_size(url: str) -> int | None:
    """Bytes the agent already holds of the file (None: nothing to resume)."""
    connection, target = _connection(url)
    try:
        connection.request("HEAD", target)
        response = connection.getresponse()
        response.read()
        if response.status == 404:
            return None
        if response.status != 200:
            raise ClientError(f"cannot ask for the stored size (HTTP {response.status})")
        return int(response.headers.get("Upload-Offset", "0"))
    finally:
        connection.close()


def _send(url: str, method: str, source: BinaryIO, length: int) -> Any:
    """Stream `length` bytes of `source` as the body of `method` to `url`."""
    connection, target = _connection(url)
    try:
        connection.putrequest(method, target)
        connection.putheader("Content-Length", str(length))
        connection.putheader("Content-Type", "application/octet-stream")
        connection.putheader("User-Agent", "encedeus-cli")
        connection.endheaders()
        remaining = length
        while remaining:
            chunk = source.read(min(CHUNK, remaining))
            if not chunk:
                raise ClientError("the local file shrank while it was being sent")
            connection.send(chunk)
            remaining -= len(chunk)
        response = connection.getresponse()
        raw = response.read()
    except OSError as exc:
        raise ClientError(f"upload interrupted: {exc}; run again with --resume") from None
    finally:
        connection.close()
    answer = json.loads(raw) if raw.strip() else {}
    if response.status >= 400:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        message = error.get("message", raw.decode(errors="replace"))
        raise ClientError(f"{message} (HTTP {response.status})", status=response.status)
    return answer


def add_commands(subparsers: Any) -> None:
    """Add `files ls|get|put|rm`."""
    files = subparsers.add_parser("files", help="a replica's files: ls, get, put, rm")
    commands = files.add_subparsers(dest="files_command", required=True, metavar="COMMAND")
    for name, command, help_text in (
        ("ls", list_files, "list a directory"),
        ("get", get_file, "download a file"),
        ("put", put_file, "upload a file"),
        ("rm", remove_file, "remove a file or directory"),
    ):
        parser = add_command(commands, name, command, help_text)
        if name == "put":
            parser.add_argument("local", help="the local file to upload")
        parser.add_argument("target", metavar="APP:PATH", help="app name or id, and a path")
        if name == "get":
            parser.add_argument("local", nargs="?", help="where to write (- for stdout)")
        if name == "put":
            parser.add_argument("--resume", action="store_true", help="send only what is missing")
        parser.add_argument("--replica", type=int, default=0, help="replica ordinal (default 0)")
