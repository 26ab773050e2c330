"""The file operations of one server directory, as the HTTP file API offers them.

Every path is a client path ("/" or "" is the server directory) resolved by
:class:`agent.sftp.tree.ConfinedTree`, the same object SFTP uses, so a path, a `..` or a
symlink the tenant made leads nowhere SFTP could not go. Recursive operations walk by
path through the tree and never descend into a symlink: a link is removed or copied as
a link, its target is left alone.

Everything here blocks: the HTTP handlers call it from worker threads.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from asyncssh import SFTPAttrs

from agent.sftp.tree import FXF_CREAT, FXF_EXCL, FXF_READ, FXF_WRITE, ConfinedTree

COPY_CHUNK = 1024 * 1024
MAX_DEPTH = 256  # deeper trees are refused rather than recursed into


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One directory entry as the API shows it (lstat: a symlink is shown as itself)."""

    name: str
    type: str  # file, directory, symlink, other
    size: int
    mode: int  # permission bits only, e.g. 0o644
    mtime: float
    link_target: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.type,
            "size": self.size,
            "mode": f"{self.mode:04o}",
            "mtime": self.mtime,
            "link_target": self.link_target,
        }


def encode(path: str) -> bytes:
    """An API path as the bytes the tree takes (surrogates pass undecodable names)."""
    return os.fsencode(path)


def type_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def join(parent: str, name: str) -> str:
    return posixpath.join(parent or "/", name)


class ServerFiles:
    """The file operations on one server directory (`tree`, which the caller closes)."""

    def __init__(self, tree: ConfinedTree) -> None:
        self.tree = tree

    def _entry(self, name: str, path: str, info: os.stat_result) -> FileEntry:
        target = None
        if stat.S_ISLNK(info.st_mode):
            target = os.fsdecode(self.tree.readlink(encode(path)))
        return FileEntry(
            name=name,
            type=type_of(info.st_mode),
            size=info.st_size,
            mode=stat.S_IMODE(info.st_mode),
            mtime=info.st_mtime,
            link_target=target,
        )

    def list(self, path: str) -> list[FileEntry]:
        """The entries of a directory (symlinks to directories inside are followed)."""
        entries = []
        for raw, info in self.tree.listdir(encode(path)):
            if raw in (b".", b".."):
                continue
            name = os.fsdecode(raw)
            entries.append(self._entry(name, join(path, name), info))
        return sorted(entries, key=lambda e: (e.type != "directory", e.name))

    def stat(self, path: str) -> FileEntry:
        info = self.tree.lstat(encode(path))
        return self._entry(posixpath.basename(path.rstrip("/")) or "/", path, info)

    def mkdir(self, path: str, *, parents: bool = False) -> None:
        """Make a directory (and its missing parents with `parents`)."""
        if not parents:
            self.tree.mkdir(encode(path), SFTPAttrs())
            return
        made = ""
        for part in [p for p in path.split("/") if p]:
            made = f"{made}/{part}"
            try:
                self.tree.mkdir(encode(made), SFTPAttrs())
            except FileExistsError:
                if not stat.S_ISDIR(self.tree.stat(encode(made)).st_mode):
                    raise
        if not made:
            raise OSError(errno.EEXIST, "the server directory exists", path)

    def rename(self, source: str, target: str) -> None:
        """Move an entry (a symlink moves as a link); an existing target is an error."""
        self.tree.rename(encode(source), encode(target), replace=False)

    def chmod(self, path: str, mode: int) -> None:
        """Set permission bits (setuid/setgid are dropped) on what `path` leads to."""
        self.tree.setstat(encode(path), SFTPAttrs(permissions=mode & 0o1777))

    def delete(self, path: str) -> int:
        """Remove an entry, a directory with everything in it; returns the bytes freed."""
        return self._remove(path, self.tree.lstat(encode(path)), 0)

    def _remove(self, path: str, info: os.stat_result, depth: int) -> int:
        if not stat.S_ISDIR(info.st_mode):
            return self.tree.remove(encode(path))
        freed = 0
        for name, child in self.children(path, depth):
            freed += self._remove(join(path, name), child, depth + 1)
        self.tree.rmdir(encode(path))
        return freed

    def children(self, path: str, depth: int) -> Iterator[tuple[str, os.stat_result]]:
        """(name, lstat) of each entry of a directory `depth` levels down a walk."""
        if depth > MAX_DEPTH:
            raise OSError(errno.ELOOP, "directory tree too deep", path)
        for raw, info in self.tree.listdir(encode(path)):
            if raw not in (b".", b".."):
                yield os.fsdecode(raw), info

    def size_of(self, path: str) -> int:
        """Bytes of the regular files at or beneath `path` (links not followed)."""
        info = self.tree.lstat(encode(path))
        return self._size(path, info, 0)

    def _size(self, path: str, info: os.stat_result, depth: int) -> int:
        if stat.S_ISREG(info.st_mode):
            return info.st_size
        if not stat.S_ISDIR(info.st_mode):
            return 0
        return sum(self._size(join(path, n), i, depth + 1) for n, i in self.children(path, depth))

    def copy(self, source: str, target: str) -> None:
        """Copy a file, a symlink (as a link, kept inside) or a directory tree; FIFOs and
        devices are skipped. An existing target is an error."""
        if _exists(self.tree, target):
            raise OSError(errno.EEXIST, "target exists", target)
        self._copy(source, target, self.tree.lstat(encode(source)), 0)

    def _copy(self, source: str, target: str, info: os.stat_result, depth: int) -> None:
        if stat.S_ISDIR(info.st_mode):
            self.tree.mkdir(encode(target), SFTPAttrs(permissions=stat.S_IMODE(info.st_mode)))
            for name, child in self.children(source, depth):
                self._copy(join(source, name), join(target, name), child, depth + 1)
        elif stat.S_ISLNK(info.st_mode):
            self.tree.symlink(self.tree.readlink(encode(source)), encode(target))
        elif stat.S_ISREG(info.st_mode):
            self._copy_file(source, target, stat.S_IMODE(info.st_mode))

    def _copy_file(self, source: str, target: str, mode: int) -> None:
        src = self.tree.open_file(encode(source), FXF_READ, SFTPAttrs()).fd
        try:
            self.write_from(src, target, mode=mode, exclusive=True)
        finally:
            os.close(src)

    def write_from(self, src: int, target: str, *, mode: int = 0o644, exclusive: bool) -> int:
        """Copy what `src` (an fd, from its offset) holds into the file `target`,
        created or truncated (`exclusive`: never replaced); returns the bytes copied."""
        dst = self.open_write(target, truncate=True, create_mode=mode, exclusive=exclusive).fd
        total = 0
        try:
            while copied := _copy_chunk(src, dst):
                total += copied
        finally:
            os.close(dst)
        return total

    def open_read(self, path: str) -> tuple[int, os.stat_result]:
        """A read-only fd of a regular file (the caller closes it) and its stat."""
        opened = self.tree.open_file(encode(path), FXF_READ, SFTPAttrs())
        return opened.fd, opened.info

    def open_write(
        self,
        path: str,
        *,
        truncate: bool = False,
        create: bool = True,
        exclusive: bool = False,
        create_mode: int = 0o644,
    ) -> OpenedForWrite:
        """A write-only fd of a regular file, created (owned by the container's user)
        when missing and `create`; the caller closes it."""
        flags = FXF_WRITE | (FXF_CREAT if create else 0) | (FXF_EXCL if exclusive else 0)
        opened = self.tree.open_file(encode(path), flags, SFTPAttrs(permissions=create_mode))
        size = opened.info.st_size
        if not truncate:
            return OpenedForWrite(opened.fd, size, 0)
        try:
            os.ftruncate(opened.fd, 0)  # after the open, so the bytes freed are known
        except OSError:
            os.close(opened.fd)
            raise
        return OpenedForWrite(opened.fd, 0, size)


@dataclass(frozen=True, slots=True)
class OpenedForWrite:
    """A file opened for writing, its size now, and the bytes a truncation freed."""

    fd: int
    size: int
    freed: int


def _copy_chunk(src: int, dst: int) -> int:
    try:
        return os.copy_file_range(src, dst, COPY_CHUNK)
    except OSError as exc:
        # Across filesystems (or where the kernel has no copy_file_range): read, write.
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    data = os.read(src, COPY_CHUNK)
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view) :]
    return len(data)


def _exists(tree: ConfinedTree, path: str) -> bool:
    try:
        tree.lstat(encode(path))
    except FileNotFoundError:
        return False
    return True
