"""The SFTP subsystem of one session: asyncssh's SFTPServer over a ConfinedTree.

Every file system call runs in the worker pool, never on the event loop; reads and
writes go through :class:`OpenFile` (read-ahead, write-behind). A read-only
grant refuses every change with SFTP "permission denied".
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import asyncssh
from asyncssh import (
    SFTPAttrs,
    SFTPName,
    SFTPPermissionDenied,
    SFTPServer,
    SFTPVFSAttrs,
    SSHServerChannel,
)

from agent.sftp.file_io import OpenFile
from agent.sftp.login import LiveSession
from agent.sftp.quota import DiskQuota
from agent.sftp.tree import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE

T = TypeVar("T")

_FILE_TYPES = (
    (stat.S_ISREG, asyncssh.FILEXFER_TYPE_REGULAR),
    (stat.S_ISDIR, asyncssh.FILEXFER_TYPE_DIRECTORY),
    (stat.S_ISLNK, asyncssh.FILEXFER_TYPE_SYMLINK),
    (stat.S_ISFIFO, asyncssh.FILEXFER_TYPE_FIFO),
    (stat.S_ISSOCK, asyncssh.FILEXFER_TYPE_SOCKET),
    (stat.S_ISCHR, asyncssh.FILEXFER_TYPE_CHAR_DEVICE),
    (stat.S_ISBLK, asyncssh.FILEXFER_TYPE_BLOCK_DEVICE),
)


def attrs_of(info: os.stat_result) -> SFTPAttrs:
    """SFTP attributes of a stat result, owners as numbers.

    Numeric because the names in the host's passwd mean nothing inside the container
    (and looking them up would read /etc/passwd on the event loop).
    """
    kind = next((t for test, t in _FILE_TYPES if test(info.st_mode)), 0)
    atime, atime_ns = divmod(info.st_atime_ns, 10**9)
    mtime, mtime_ns = divmod(info.st_mtime_ns, 10**9)
    return SFTPAttrs(
        type=kind or asyncssh.FILEXFER_TYPE_UNKNOWN,
        size=info.st_size,
        uid=info.st_uid,
        gid=info.st_gid,
        owner=str(info.st_uid),
        group=str(info.st_gid),
        permissions=info.st_mode,
        atime=atime,
        atime_ns=atime_ns,
        mtime=mtime,
        mtime_ns=mtime_ns,
        nlink=info.st_nlink,
    )


def v3_open_flags(desired_access: int, flags: int) -> int:
    """SFTP v3 pflags equivalent to a v5/v6 (desired_access, flags) pair."""
    pflags = FXF_READ if desired_access & asyncssh.ACE4_READ_DATA else 0
    if desired_access & (asyncssh.ACE4_WRITE_DATA | asyncssh.ACE4_APPEND_DATA):
        pflags |= FXF_WRITE
    pflags |= {
        asyncssh.FXF_CREATE_NEW: FXF_CREAT | FXF_EXCL,
        asyncssh.FXF_CREATE_TRUNCATE: FXF_CREAT | FXF_TRUNC,
        asyncssh.FXF_OPEN_OR_CREATE: FXF_CREAT,
        asyncssh.FXF_TRUNCATE_EXISTING: FXF_TRUNC,
    }.get(flags & asyncssh.FXF_ACCESS_DISPOSITION, 0)
    if desired_access & asyncssh.ACE4_APPEND_DATA or flags & asyncssh.FXF_APPEND_DATA:
        pflags |= FXF_APPEND
    return pflags


def _named(entries: list[tuple[bytes, os.stat_result]]) -> list[SFTPName]:
    return [SFTPName(name, attrs=attrs_of(info)) for name, info in entries]


class ConfinedSFTPServer(SFTPServer):
    """SFTP requests served beneath one server directory, file I/O in `executor`."""

    def __init__(
        self,
        chan: SSHServerChannel[bytes],
        session: LiveSession,
        quota: DiskQuota,
        executor: Executor,
    ) -> None:
        super().__init__(chan)
        self._session = session  # its grant may change (revalidation): read it per request
        self._tree = session.tree
        self._quota = quota
        self._executor = executor
        self._loop = asyncio.get_running_loop()

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._executor, func, *args)

    def format_user(self, uid: int | None) -> str:
        return "" if uid is None else str(uid)

    def format_group(self, gid: int | None) -> str:
        return "" if gid is None else str(gid)

    def _require_write(self) -> None:
        if not self._session.grant.can_write:
            raise SFTPPermissionDenied("read-only access")

    async def _charge(self, growth: int) -> None:
        if growth > 0 and self._quota.limit_bytes:
            if self._quota.stale():
                await self._quota.refresh(self._run)
            self._quota.charge(growth)

    # -- paths ---------------------------------------------------------------------------

    def map_path(self, path: bytes) -> bytes:
        # asyncssh's default methods open map_path() on the host: any of them that
        # this class fails to override must fail closed, not touch the host.
        raise SFTPPermissionDenied("operation not available")

    def reverse_map_path(self, path: bytes) -> bytes:
        raise SFTPPermissionDenied("operation not available")

    async def realpath(self, path: bytes) -> bytes:
        return await self._run(self._tree.realpath, path)

    # -- files ---------------------------------------------------------------------------

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> OpenFile:
        writes = bool(pflags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC))
        if writes:
            self._require_write()
        opened = await self._run(self._tree.open_file, path, pflags, attrs)
        return OpenFile(
            opened.fd,
            opened.info.st_size,
            writes,
            self._executor,
            append=bool(pflags & FXF_APPEND),
        )

    async def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: SFTPAttrs
    ) -> OpenFile:
        """SFTP v5/v6 open, translated to the v3 flags `open` takes."""
        return await self.open(path, v3_open_flags(desired_access, flags), attrs)

    async def close(self, file_obj: object) -> None:
        assert isinstance(file_obj, OpenFile)
        await file_obj.close()

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, OpenFile)
        return await file_obj.read(offset, size)

    async def read_view(self, file_obj: object, offset: int, size: int) -> bytes | memoryview:
        """`read`, possibly as a read-only view (see OpenFile.read_view)."""
        assert isinstance(file_obj, OpenFile)
        return await file_obj.read_view(offset, size)

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        assert isinstance(file_obj, OpenFile)
        if not file_obj.writable:
            raise SFTPPermissionDenied("file not opened for writing")
        self._require_write()  # the grant may have turned read-only since the open
        # An append handle writes at the end whatever the offset: it grows by it all.
        end = file_obj.size + len(data) if file_obj.append else offset + len(data)
        await self._charge(end - file_obj.size)
        file_obj.size = max(file_obj.size, end)
        await file_obj.write(offset, data)
        return len(data)

    async def fstat(self, file_obj: object) -> SFTPAttrs:
        assert isinstance(file_obj, OpenFile)
        await file_obj.settle()
        return await self._run(lambda: attrs_of(os.fstat(file_obj.fd)))

    async def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        assert isinstance(file_obj, OpenFile)
        self._require_write()
        await file_obj.settle()
        await self._charge_resize(attrs, file_obj.size)
        await self._run(self._tree.fsetstat, file_obj.fd, attrs)
        if attrs.size is not None:
            file_obj.size = attrs.size

    async def fsync(self, file_obj: object) -> None:
        assert isinstance(file_obj, OpenFile)
        await file_obj.settle()
        await self._run(os.fsync, file_obj.fd)

    async def fstatvfs(self, file_obj: object) -> SFTPVFSAttrs:
        return await self.statvfs(b"/")

    # -- metadata ------------------------------------------------------------------------

    async def stat(self, path: bytes) -> SFTPAttrs:
        return await self._run(lambda: attrs_of(self._tree.stat(path)))

    async def lstat(self, path: bytes) -> SFTPAttrs:
        return await self._run(lambda: attrs_of(self._tree.lstat(path)))

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._require_write()
        if attrs.size is not None:
            await self._charge_resize(attrs, (await self.stat(path)).size or 0)
        await self._run(self._tree.setstat, path, attrs)

    async def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._require_write()
        if attrs.size is not None:
            await self._charge_resize(attrs, (await self.lstat(path)).size or 0)
        await self._run(functools.partial(self._tree.setstat, path, attrs, follow=False))

    async def _charge_resize(self, attrs: SFTPAttrs, current: int) -> None:
        if attrs.size is None:
            return
        if attrs.size > current:
            await self._charge(attrs.size - current)
        else:
            self._quota.release(current - attrs.size)

    async def statvfs(self, path: bytes) -> SFTPVFSAttrs:
        """The file system's figures, or the disk limit's when the server has one."""
        result = SFTPVFSAttrs.from_local(await self._run(self._tree.statvfs, path))
        limit = self._quota.limit_bytes
        if limit and result.frsize:
            if self._quota.stale():
                await self._quota.refresh(self._run)
            free = max(0, limit - (self._quota.used or 0)) // result.frsize
            result.blocks = limit // result.frsize
            result.bfree = min(result.bfree, free)
            result.bavail = min(result.bavail, free)
        return result

    # -- directories ---------------------------------------------------------------------

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        for name in await self._run(lambda: _named(self._tree.listdir(path))):
            yield name

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._require_write()
        await self._run(self._tree.mkdir, path, attrs)

    async def rmdir(self, path: bytes) -> None:
        self._require_write()
        await self._run(self._tree.rmdir, path)

    async def remove(self, path: bytes) -> None:
        self._require_write()
        self._quota.release(await self._run(self._tree.remove, path))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._require_write()
        await self._run(functools.partial(self._tree.rename, oldpath, newpath, replace=False))

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._require_write()
        await self._run(functools.partial(self._tree.rename, oldpath, newpath, replace=True))

    async def readlink(self, path: bytes) -> bytes:
        return await self._run(self._tree.readlink, path)

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        self._require_write()
        await self._run(self._tree.symlink, oldpath, newpath)

    async def link(self, oldpath: bytes, newpath: bytes) -> None:
        self._require_write()
        await self._run(self._tree.link, oldpath, newpath)
