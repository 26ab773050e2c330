"""Pull a URL into a server directory with the one guarded outbound client.

The fetch is :func:`common.outbound.guarded_session`'s (every connection's address
checked, redirects included; the same SSRF rules as task inputs). Its body goes to a
file in the agent's own `pulls/` directory first (`fetch_to_file` writes by path, and a
path inside the server directory could be redirected by a tenant's symlink); only then
is it copied into place through the confined tree, owned by the container's user.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from agent.files.operations import ServerFiles
from common.outbound import FetchedFile, OutboundPolicy, guarded_session

GiB = 1024**3
PULL_POLICY = OutboundPolicy(max_bytes=16 * GiB, timeout_seconds=1800.0)


def _prepare(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _install(files: ServerFiles, fetched: Path, target: str) -> int:
    fd = os.open(fetched, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return files.write_from(fd, target, exclusive=False)
    finally:
        os.close(fd)


async def fetch_for_pull(
    url: str, staging: Path, policy: OutboundPolicy, max_bytes: int
) -> FetchedFile:
    """Fetch `url` into a new file under `staging` (the caller removes it), at most
    `max_bytes` (and the policy's own cap). Raises common.outbound's errors."""
    await asyncio.to_thread(_prepare, staging)
    capped = OutboundPolicy(
        allow_private=policy.allow_private,
        allowed_networks=policy.allowed_networks,
        max_bytes=max(1, min(policy.max_bytes, max_bytes)),
        timeout_seconds=policy.timeout_seconds,
        max_redirects=policy.max_redirects,
    )
    async with guarded_session(capped) as http:
        return await http.fetch_to_file(url, staging / f"pull-{uuid.uuid4().hex}")


async def install_pulled(files: ServerFiles, fetched: FetchedFile, target: str) -> int:
    """Copy a fetched file to `target` in the server directory (created or replaced);
    the caller removes the staged file."""
    return await asyncio.to_thread(_install, files, fetched.path, target)
