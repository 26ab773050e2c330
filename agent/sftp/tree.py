"""One server's directory as an SFTP session sees it: "/" is the server directory.

Every method resolves its path beneath the root directory fd with
:func:`agent.files.confine.open_beneath`, then acts through that fd or through the
parent directory's fd with *at() calls that never follow the final component, so
there is no gap between checking a path and using it. Operations that follow
symlinks (stat, open, setstat, opendir) follow them only while they stay inside;
operations on an entry itself (lstat, remove, rename, readlink, symlink) touch the
link, never its target. Only regular files are ever opened for data: a FIFO or
device node made by the container is refused before it is opened.

All methods block; the SFTP session calls them from worker threads.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from asyncssh import SFTPAttrs

from agent.files.confine import open_beneath, open_parent_beneath, split_parent
from agent.sftp.attributes import apply_attrs, check_owner, proc_path, times_of
from agent.sftp.quota import usage_beneath

FXF_READ = 0x01
FXF_WRITE = 0x02
FXF_APPEND = 0x04
FXF_CREAT = 0x08
FXF_TRUNC = 0x10
FXF_EXCL = 0x20


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A regular file opened for a client: the fd, whether this open created it, its stat."""

    fd: int
    created: bool
    info: os.stat_result


def relative(path: bytes) -> bytes:
    """A client path ("/a/b", "a/b") as a path relative to the root; NUL is refused."""
    if b"\0" in path:
        raise OSError(errno.EINVAL, "NUL in path")
    return path.lstrip(b"/")


@contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


class ConfinedTree:
    """The server directory behind `root_fd` (an O_PATH directory fd this object owns).

    `owner` (uid, gid) is given to every file, directory and symlink created, so the
    container's process can use them; None keeps the agent's own ids.
    """

    def __init__(self, root_fd: int, *, owner: tuple[int, int] | None = None) -> None:
        self._fd = root_fd
        self._owner = owner
        self._root_path = os.fsencode(os.readlink(proc_path(root_fd)))
        self._lock = threading.Lock()
        self._users = 0
        self._closed = False

    @classmethod
    def open(
        cls, volumes_dir: str, server_id: str, *, owner: tuple[int, int] | None = None
    ) -> ConfinedTree:
        """Open (creating when missing) `<volumes_dir>/<server_id>` and confine to it."""
        if not server_id or "/" in server_id or server_id in (".", "..") or "\0" in server_id:
            raise OSError(errno.EINVAL, "invalid server id")
        os.makedirs(volumes_dir, mode=0o711, exist_ok=True)
        volumes = os.open(volumes_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        with _closing(volumes):
            with suppress(FileExistsError):
                os.mkdir(server_id, 0o755, dir_fd=volumes)
            root = os.open(
                server_id, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=volumes
            )
        return cls(root, owner=owner)

    def close(self) -> None:
        """Release the root fd once no operation uses it; later calls fail with EBADF.

        Deferred so that an operation still running in a worker thread never finds
        its fd number reused by another open (perhaps another server's root).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._users:
                return
        os.close(self._fd)

    @contextmanager
    def _using(self) -> Iterator[int]:
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "session closed")
            self._users += 1
        try:
            yield self._fd
        finally:
            with self._lock:
                self._users -= 1
                last = self._closed and not self._users
            if last:
                os.close(self._fd)

    def _beneath(self, rel: bytes, flags: int, mode: int = 0o644) -> int:
        with self._using() as root:
            return open_beneath(root, rel, flags, mode)

    def _parent(self, rel: bytes) -> tuple[int, bytes]:
        with self._using() as root:
            return open_parent_beneath(root, rel)

    # -- paths -------------------------------------------------------------------------

    def presented(self, fd: int) -> bytes | None:
        """Where `fd` lies, as the client sees it ("/..."), or None if not beneath root."""
        where = os.fsencode(os.readlink(proc_path(fd)))
        if where == self._root_path:
            return b"/"
        if where.startswith(self._root_path + b"/"):
            return where[len(self._root_path) :]
        return None

    def realpath(self, path: bytes) -> bytes:
        """The canonical client path; never a host path. Missing names resolve lexically."""
        rel = relative(path)
        lexical = posixpath.normpath(b"/" + rel)
        try:
            with _closing(self._beneath(rel, os.O_PATH)) as fd:
                return self.presented(fd) or lexical
        except OSError:
            pass
        try:
            parent, name = split_parent(rel)
            with _closing(self._beneath(parent, os.O_PATH | os.O_DIRECTORY)) as fd:
                base = self.presented(fd)
        except OSError:
            return lexical
        return posixpath.join(base, name) if base else lexical

    # -- metadata ------------------------------------------------------------------------

    def stat(self, path: bytes) -> os.stat_result:
        with _closing(self._beneath(relative(path), os.O_PATH)) as fd:
            return os.fstat(fd)

    def lstat(self, path: bytes) -> os.stat_result:
        rel = relative(path)
        try:
            parent, name = split_parent(rel)
        except OSError:
            return self.stat(path)  # "", "." and ".." are never symlinks
        with _closing(self._beneath(parent, os.O_PATH | os.O_DIRECTORY)) as fd:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def statvfs(self, path: bytes) -> os.statvfs_result:
        with _closing(self._beneath(relative(path), os.O_PATH)) as fd:
            return os.fstatvfs(fd)

    def setstat(self, path: bytes, attrs: SFTPAttrs, *, follow: bool = True) -> None:
        """Apply size, permissions and times; a symlink itself only takes times."""
        rel = relative(path)
        if not follow:
            parent_fd, name = self._parent(rel)
            with _closing(parent_fd):
                info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    if attrs.permissions is not None or attrs.size is not None:
                        raise OSError(errno.EOPNOTSUPP, "a symlink has no mode or size")
                    check_owner(attrs, info)
                    times = times_of(attrs, info)
                    if times:
                        os.utime(name, ns=times, dir_fd=parent_fd, follow_symlinks=False)
                    return
        flags = os.O_PATH | (0 if follow else os.O_NOFOLLOW)
        with _closing(self._beneath(rel, flags)) as fd:
            apply_attrs(fd, attrs, os.fstat(fd))

    def fsetstat(self, fd: int, attrs: SFTPAttrs) -> None:
        apply_attrs(fd, attrs, os.fstat(fd))

    # -- files and directories ------------------------------------------------------------

    def open_file(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> OpenedFile:
        """Open a regular file with SFTP v3 open flags; anything else is refused unopened."""
        rel = relative(path)
        access = _access_flags(pflags)
        mode = attrs.permissions & 0o777 if attrs.permissions is not None else 0o644
        if pflags & FXF_CREAT:
            try:
                fd = self._beneath(rel, access | os.O_CREAT | os.O_EXCL, mode)
            except FileExistsError:
                if pflags & FXF_EXCL:
                    raise
            else:
                self._give_fd(fd)
                return OpenedFile(fd, True, os.fstat(fd))
        with _closing(self._beneath(rel, os.O_PATH)) as pfd:
            info = os.fstat(pfd)
            if stat.S_ISDIR(info.st_mode):
                raise OSError(errno.EISDIR, "is a directory", path)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EACCES, "not a regular file", path)
            fd = os.open(proc_path(pfd), access | os.O_CLOEXEC | os.O_NOCTTY)
        return OpenedFile(fd, False, os.fstat(fd))

    def listdir(self, path: bytes) -> list[tuple[bytes, os.stat_result]]:
        """Every entry with its lstat, "." and ".." first; ".." of the root is the root."""
        with _closing(self._beneath(relative(path), os.O_RDONLY | os.O_DIRECTORY)) as fd:
            here = os.fstat(fd)
            with self._using() as root_fd:
                root = os.fstat(root_fd)
            at_root = (here.st_dev, here.st_ino) == (root.st_dev, root.st_ino)
            up = here if at_root else os.stat("..", dir_fd=fd, follow_symlinks=False)
            entries: list[tuple[bytes, os.stat_result]] = [(b".", here), (b"..", up)]
            with os.scandir(fd) as scan:
                for entry in scan:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed while listing
                    entries.append((os.fsencode(entry.name), info))
        return entries

    def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        mode = attrs.permissions & 0o1777 if attrs.permissions is not None else 0o755
        parent_fd, name = self._parent(relative(path))
        with _closing(parent_fd):
            os.mkdir(name, mode, dir_fd=parent_fd)
            self._give(parent_fd, name)

    def rmdir(self, path: bytes) -> None:
        parent_fd, name = self._parent(relative(path))
        with _closing(parent_fd):
            os.rmdir(name, dir_fd=parent_fd)

    def remove(self, path: bytes) -> int:
        """Unlink a file or a symlink itself; the bytes it held (apparent size) are returned."""
        parent_fd, name = self._parent(relative(path))
        with _closing(parent_fd):
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            os.unlink(name, dir_fd=parent_fd)
        return info.st_size if stat.S_ISREG(info.st_mode) and info.st_nlink == 1 else 0

    def rename(self, old: bytes, new: bytes, *, replace: bool) -> None:
        """Rename an entry (a symlink moves as a link); without `replace` an existing
        target is an error, as SFTP v3 rename requires."""
        old_fd, old_name = self._parent(relative(old))
        with _closing(old_fd):
            new_fd, new_name = self._parent(relative(new))
            with _closing(new_fd):
                if not replace and _exists(new_name, new_fd):
                    raise OSError(errno.EEXIST, "target exists", new)
                os.rename(old_name, new_name, src_dir_fd=old_fd, dst_dir_fd=new_fd)

    def link(self, old: bytes, new: bytes) -> None:
        old_fd, old_name = self._parent(relative(old))
        with _closing(old_fd):
            new_fd, new_name = self._parent(relative(new))
            with _closing(new_fd):
                os.link(
                    old_name, new_name, src_dir_fd=old_fd, dst_dir_fd=new_fd, follow_symlinks=False
                )

    def symlink(self, target: bytes, linkpath: bytes) -> None:
        """Create a symlink whose target stays inside, stored relative to the link.

        An absolute target is taken as a client path ("/" = the server directory) and
        stored relative, so it means the same file to SFTP and to the container; a
        relative target that climbs above the root is refused (EACCES).
        """
        if b"\0" in target or not target:
            raise OSError(errno.EINVAL, "invalid symlink target")
        parent_fd, name = self._parent(relative(linkpath))
        with _closing(parent_fd):
            link_dir = self.presented(parent_fd)
            if link_dir is None:
                raise OSError(errno.EACCES, "outside the server directory")
            os.symlink(_contained_target(link_dir, target), name, dir_fd=parent_fd)
            self._give(parent_fd, name)

    def readlink(self, path: bytes) -> bytes:
        parent_fd, name = self._parent(relative(path))
        with _closing(parent_fd):
            return os.readlink(name, dir_fd=parent_fd)

    def disk_usage(self) -> int:
        """Apparent bytes of every regular file beneath the root (links not followed)."""
        return usage_beneath(self._beneath(b"", os.O_RDONLY | os.O_DIRECTORY))

    # -- ownership -------------------------------------------------------------------------

    def _wants_chown(self) -> bool:
        return self._owner is not None and self._owner != (os.geteuid(), os.getegid())

    def _give(self, dir_fd: int, name: bytes) -> None:
        if self._owner is not None and self._wants_chown():
            os.chown(name, *self._owner, dir_fd=dir_fd, follow_symlinks=False)

    def _give_fd(self, fd: int) -> None:
        if self._owner is not None and self._wants_chown():
            os.fchown(fd, *self._owner)


def _access_flags(pflags: int) -> int:
    if pflags & FXF_READ and pflags & FXF_WRITE:
        flags = os.O_RDWR
    elif pflags & (FXF_WRITE | FXF_APPEND):
        flags = os.O_WRONLY
    else:
        flags = os.O_RDONLY
    if pflags & FXF_TRUNC:
        flags |= os.O_TRUNC
    if pflags & FXF_APPEND:
        flags |= os.O_APPEND
    return flags


def _exists(name: bytes, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _contained_target(link_dir: bytes, target: bytes) -> bytes:
    if target.startswith(b"/"):
        return posixpath.relpath(posixpath.normpath(target), link_dir)
    depth = len([p for p in link_dir.split(b"/") if p])
    for part in target.split(b"/"):
        if part == b"..":
            depth -= 1
            if depth < 0:
                raise OSError(errno.EACCES, "symlink target outside the server directory")
        elif part not in (b"", b"."):
            depth += 1
    return target
