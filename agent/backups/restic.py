"""One restic repository, driven as a subprocess (`restic`, Debian's package).

Every call is an asyncio subprocess: the event loop never waits on restic. The
repository URL and its password reach restic through its environment
(`RESTIC_REPOSITORY`, `RESTIC_PASSWORD` or `RESTIC_PASSWORD_FILE`), never its command
line, so neither shows in `ps`; errors name the repository by its :attr:`identity`
(credentials stripped), and restic's own messages are passed through
:meth:`ResticRepository.redact` before anything logs or returns them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.private_files import write_private_file
from common.subprocesses import DEVNULL, PIPE, spawn, stop_process

#: How much of restic's stderr an error carries.
ERROR_TAIL_BYTES = 2000
#: How long restic may take to remove its lock when asked to stop.
STOP_SECONDS = 10.0
# Up to the authority's last "@", as Go's url.Parse (restic) reads it: a password may
# hold "@" or ":".
_USERINFO_PASSWORD = re.compile(r"(//[^/@:]*):[^/]*@")


class ResticError(Exception):
    """restic failed; the message is restic's own (redacted), `command` its verb."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"restic {command} failed: {message}")
        self.command = command


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What restic reports of one snapshot."""

    id: str
    tree: str
    time: str
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BackupSummary:
    """The outcome of one `restic backup`."""

    snapshot: Snapshot
    files: int
    size_bytes: int


def _without_credentials(url: str) -> str:
    """The URL with the password of any `//user:password@` removed (rest:, s3: URLs)."""
    return _USERINFO_PASSWORD.sub(r"\1@", url)


class RepositoryTurns:
    """Who may use the repository now, within this agent: any number of commands at
    once, or one that needs it alone (forget/prune: restic refuses its exclusive lock
    while another lock is held, and restic 0.14 cannot wait for one). A waiting
    exclusive command goes before shared ones that arrive after it."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._sharing = 0
        self._exclusive_waiting = 0
        self._exclusive_held = False

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._exclusive_held and not self._exclusive_waiting
            )
            self._sharing += 1
        try:
            yield
        finally:
            async with self._changed:
                self._sharing -= 1
                self._changed.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._changed:
            self._exclusive_waiting += 1
            try:
                await self._changed.wait_for(lambda: not self._exclusive_held and not self._sharing)
            finally:
                self._exclusive_waiting -= 1
            self._exclusive_held = True
        try:
            yield
        finally:
            async with self._changed:
                self._exclusive_held = False
                self._changed.notify_all()


class ResticRepository:
    """A restic repository: `url` with its password (`password` or `password_file`),
    initialised on first use. `identity` names it to the control plane: backups in the
    same repository are reachable from every node that names it the same."""

    def __init__(
        self,
        url: str,
        *,
        identity: str,
        cache_dir: Path,
        password: str = "",
        password_file: Path | None = None,
        binary: str = "restic",
        env: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        if not password and password_file is None:
            raise ValueError("a restic repository needs a password or a password file")
        self.url, self.identity, self.binary = url, identity, binary
        self._password, self._password_file = password, password_file
        self._cache_dir = cache_dir
        self._env = dict(env or {})
        self._options = [f"-o={key}={value}" for key, value in sorted((options or {}).items())]
        self._ready = asyncio.Lock()
        self._initialised = False
        self._turns = RepositoryTurns()

    @classmethod
    def of_node(cls, data_dir: Path, node_id: str, binary: str = "restic") -> ResticRepository:
        """This node's own repository at `<data_dir>/backups`, its password (made on
        first use, 0600) at `<data_dir>/backups.key`."""
        return cls(
            str(data_dir / "backups"),
            identity=f"node:{node_id}",
            cache_dir=data_dir / "restic-cache",
            password_file=data_dir / "backups.key",
            binary=binary,
        )

    @staticmethod
    def identity_of(url: str) -> str:
        """How a configured repository is named to the control plane."""
        return f"restic:{_without_credentials(url)}"

    def redact(self, text: str) -> str:
        """`text` with the repository URL and password replaced."""
        for secret in (self._password, self.url):
            if secret:
                text = text.replace(secret, "***" if secret == self._password else self.identity)
        return text

    def _environment(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "TMPDIR")
        env = {key: os.environ[key] for key in keep if key in os.environ}
        env.update(self._env)
        env["RESTIC_REPOSITORY"] = self.url
        env["RESTIC_CACHE_DIR"] = str(self._cache_dir)
        if self._password_file is not None:
            env["RESTIC_PASSWORD_FILE"] = str(self._password_file)
        else:
            env["RESTIC_PASSWORD"] = self._password
        return env

    async def start(
        self, command: str, *args: str, cwd: Path | None = None, stdout: int | None = None
    ) -> asyncio.subprocess.Process:
        """Start `restic <command> args...` (no shell); stdout piped unless `stdout`."""
        return await spawn(
            self.binary,
            command,
            *self._options,
            *args,
            cwd=cwd,
            env=self._environment(),
            stdin=DEVNULL,
            stdout=PIPE if stdout is None else stdout,
            stderr=PIPE,
        )

    async def run(self, command: str, *args: str, cwd: Path | None = None) -> bytes:
        """Run restic to completion; its stdout, or ResticError with its stderr."""
        await self.ensure_initialised()
        async with self._turns.shared():
            return await self._run(command, *args, cwd=cwd)

    async def _run(self, command: str, *args: str, cwd: Path | None = None) -> bytes:
        process = await self.start(command, *args, cwd=cwd)
        try:
            out, err = await process.communicate()
        except asyncio.CancelledError:
            await _stop(process)
            raise
        if process.returncode != 0:
            raise ResticError(command, self.error_text(err))
        return out

    def error_text(self, stderr: bytes) -> str:
        """restic's stderr as an error message: its end, redacted."""
        text = stderr[-ERROR_TAIL_BYTES:].decode(errors="replace").strip()
        return self.redact(text) or "no message"

    async def ensure_initialised(self) -> None:
        """Open the repository, initialising it when it does not exist yet (once)."""
        if self._initialised:
            return
        async with self._ready:
            if self._initialised:
                return
            if self._password_file is not None:
                await asyncio.to_thread(_ensure_key, self._password_file)
            try:
                await self._run("cat", "config")
            except ResticError as missing:
                try:
                    await self._run("init")
                except ResticError as failed:
                    raise ResticError("init", f"{failed}; opening it: {missing}") from failed
            self._initialised = True

    async def backup(
        self, directory: Path, *, tags: Sequence[str], excludes: Sequence[str]
    ) -> BackupSummary:
        """Back up the contents of `directory` (stored at the snapshot's root)."""
        args = ["--json", "--host", "skyhook"]
        args += [f"--tag={tag}" for tag in tags]
        args += [f"--exclude={pattern}" for pattern in excludes]
        out = await self.run("backup", *args, ".", cwd=directory)
        summary = _summary_of(out)
        snapshot = await self.snapshot(str(summary["snapshot_id"]))
        return BackupSummary(
            snapshot=snapshot,
            files=int(summary.get("total_files_processed", 0)),
            size_bytes=int(summary.get("total_bytes_processed", 0)),
        )

    async def snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot by (short or full) id; ResticError when there is none."""
        out = await self.run("snapshots", "--json", snapshot_id)
        found = json.loads(out or b"[]")
        if not found:
            raise ResticError("snapshots", f"no snapshot {snapshot_id}")
        item = found[0]
        return Snapshot(
            id=str(item["id"]),
            tree=str(item["tree"]),
            time=str(item["time"]),
            tags=tuple(item.get("tags") or ()),
        )

    async def restore(self, snapshot_id: str, target: Path) -> None:
        """Write the snapshot's files into `target` (over what is there)."""
        await self.run("restore", snapshot_id, "--target", str(target))

    async def forget(self, snapshot_id: str) -> None:
        """Forget the snapshot and prune the data nothing else uses."""
        await self.ensure_initialised()
        async with self._turns.exclusive():
            # Locks of restic processes that died without removing them (an agent
            # killed mid-command) would refuse every forget: `unlock` removes only
            # those (no other command of this agent runs now).
            await self._run("unlock")
            await self._run("forget", "--prune", snapshot_id)

    async def dump(
        self, snapshot_id: str, chunk_bytes: int = 256 * 1024
    ) -> AsyncGenerator[bytes, None]:
        """The snapshot's files as a tar stream, in chunks. ResticError (before the
        first chunk when restic fails at once) when restic fails.

        Takes no turn (:class:`RepositoryTurns`): its pace is its reader's, a client
        of the download, who must not make a forget wait, and every other account's
        backups behind that forget. restic's own lock still keeps the snapshot: a
        forget meanwhile fails (and is tried again later) instead of waiting."""
        await self.ensure_initialised()
        process = await self.start("dump", "--archive", "tar", snapshot_id, "/")
        assert process.stdout is not None
        assert process.stderr is not None
        errors = asyncio.ensure_future(process.stderr.read())
        try:
            while chunk := await process.stdout.read(chunk_bytes):
                yield chunk
            if await process.wait() != 0:
                raise ResticError("dump", self.error_text(await errors))
        finally:
            await _stop(process)
            await process.stdout.read()  # to its end: the pipe closes
            await errors


async def _stop(process: asyncio.subprocess.Process) -> None:
    """End restic the way that lets it remove its lock from the repository (SIGINT);
    SIGKILL only when it has not ended after STOP_SECONDS (its lock then stays,
    stale, until the next forget's `unlock`)."""
    await stop_process(process, signal.SIGINT, STOP_SECONDS)


def _summary_of(out: bytes) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("message_type") == "summary":
            return message
    raise ResticError("backup", "restic reported no summary")


def _ensure_key(path: Path) -> None:
    """Make the node repository's password file on first use (blocking)."""
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(32))
