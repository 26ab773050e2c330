"""Which credentials each image on this node was pulled with ("ensure secret pulled
images", as Kubernetes calls it), so that the engine's local store never hands one
tenant's private image to another.

For every successful pull the agent records, under the image's name and its
repo@sha256 digest, a fingerprint of the credentials used: a keyed hash (HMAC-SHA256
with a random key of this node, kept in the same file) of server, username and
password, never the secret itself; an anonymous pull records `anonymous`. A spec may
use a local copy when nothing is recorded for it (built or imported on the node, or
pulled before this record existed), when it was ever pulled anonymously (public), or
when its own credentials' fingerprint is recorded; otherwise it must pull with its own
credentials so the registry decides. Persisted as `<agent dir>/image-pull-grants.json`
next to the image collector's `image-usage.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from agent.runtime.images import RegistryCredentials

ANONYMOUS = "anonymous"


class PullGrants:
    """The record; load it with :meth:`load` before use (loop-thread only after)."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self._key = b""
        self._grants: dict[str, set[str]] = {}
        # One write at a time: concurrent pulls ending together share the temp file.
        self._writing = asyncio.Lock()

    async def load(self) -> None:
        """Read the record (a fresh key and an empty record when there is none)."""
        if not self._key:
            self._key, self._grants = await asyncio.to_thread(self._read)

    def fingerprint(self, credentials: RegistryCredentials | None) -> str:
        """`anonymous`, or the keyed hash of the credentials."""
        if credentials is None:
            return ANONYMOUS
        text = json.dumps([credentials.server_address, credentials.username, credentials.password])
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def allows(self, names: list[str], credentials: RegistryCredentials | None) -> bool:
        """Whether a spec with `credentials` may use the local image known as `names`."""
        recorded = set().union(*(self._grants.get(name, set()) for name in names if name))
        if not recorded or ANONYMOUS in recorded:
            return True
        return self.fingerprint(credentials) in recorded

    async def record(self, names: list[str], credentials: RegistryCredentials | None) -> None:
        """Note a successful pull of the image known as `names` with `credentials`."""
        async with self._writing:
            await self.load()
            mark = self.fingerprint(credentials)
            for name in names:
                if name:
                    self._grants.setdefault(name, set()).add(mark)
            snapshot = {name: sorted(marks) for name, marks in self._grants.items()}
            await asyncio.to_thread(self._write, snapshot)

    def _read(self) -> tuple[bytes, dict[str, set[str]]]:
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            key = bytes.fromhex(str(data["key"]))
            grants = {str(k): {str(m) for m in v} for k, v in data["grants"].items()}
            if key:
                return key, grants
        return secrets.token_bytes(32), {}

    def _write(self, grants: dict[str, list[str]]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"key": self._key.hex(), "grants": grants}, handle)
        tmp.replace(self.state_file)
