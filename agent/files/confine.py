"""Open paths beneath a directory fd, never leaving it, whatever symlinks lie on the way.

The kernel does the work where it can: openat2(2) with RESOLVE_BENEATH refuses any
resolution step (a `..`, an absolute symlink, a relative symlink climbing out) that
would leave the starting directory, and RESOLVE_NO_MAGICLINKS refuses /proc-style
links. Kernels before 5.6, or seccomp profiles that hide openat2, get an equivalent
walk in userspace: one component at a time with O_NOFOLLOW, symlinks read with
readlinkat and spliced into the remaining path, `..` popping a stack of directory
fds and never popping the root. Both give the same answers: EXDEV for an escape,
ELOOP after 40 symlinks.

Everything here is blocking and meant to run in a worker thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every architecture that has it
_MAX_SYMLINKS = 40  # the kernel's own limit (MAXSYMLINKS)


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = (
    ctypes.c_long,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.POINTER(_OpenHow),
    ctypes.c_size_t,
)


def _probe_openat2() -> bool:
    if platform.system() != "Linux":
        return False
    how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, RESOLVE_BENEATH)
    fd = _syscall(_SYS_OPENAT2, -100, b".", ctypes.byref(how), ctypes.sizeof(how))  # AT_FDCWD
    if fd < 0:
        # ENOSYS: kernel before 5.6; EPERM: a seccomp profile that predates openat2.
        return False
    os.close(fd)
    return True


_openat2_usable = _probe_openat2()


def openat2_available() -> bool:
    """True while the kernel's openat2 is being used (False: the userspace walk)."""
    return _openat2_usable


def use_openat2(enabled: bool) -> None:
    """Force the resolver (tests use this to prove the userspace walk on a new kernel)."""
    global _openat2_usable
    _openat2_usable = enabled


def _openat2(dir_fd: int, path: bytes, flags: int, mode: int) -> int:
    # openat2 refuses a mode without O_CREAT (open(2) silently ignored it).
    how = _OpenHow(
        flags | os.O_CLOEXEC,
        mode if flags & os.O_CREAT else 0,
        RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    )
    for _ in range(100):
        fd = _syscall(_SYS_OPENAT2, dir_fd, path or b".", ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        # EAGAIN: a concurrent rename raced the lookup (RESOLVE_BENEATH retries nothing).
        if err not in (errno.EINTR, errno.EAGAIN):
            break
    raise OSError(err, os.strerror(err), path)


def open_beneath(root_fd: int, path: bytes, flags: int, mode: int = 0o644) -> int:
    """Open `path` (relative; b"" is the root itself) beneath `root_fd`.

    Symlinks are followed only while they stay beneath the root; O_NOFOLLOW in `flags`
    stops at a final symlink as open(2) does. Raises OSError(EXDEV) on any escape.
    """
    if b"\0" in path:
        raise OSError(errno.EINVAL, "NUL in path", path)
    if _openat2_usable:
        return _openat2(root_fd, path, flags, mode)
    return _walk_open(root_fd, path, flags, mode)


def open_regular_beneath(root_fd: int, path: bytes, flags: int, mode: int = 0o644) -> int:
    """Open the regular file `path` beneath `root_fd` with `flags`; anything else there
    (a FIFO, a device, a socket, a directory) is refused with EACCES and never opened,
    so a tenant's mkfifo cannot block the calling thread.

    With O_CREAT a missing file is created (O_EXCL, never through a final symlink);
    an existing one is found with O_PATH first, checked with fstat and only then
    reopened with `flags` through /proc/self/fd (the exact inode checked).
    """
    if flags & os.O_CREAT:
        try:
            return open_beneath(root_fd, path, flags | os.O_EXCL | os.O_NOFOLLOW, mode)
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
    path_fd = open_beneath(root_fd, path, os.O_PATH | (flags & os.O_NOFOLLOW))
    try:
        if not stat.S_ISREG(os.fstat(path_fd).st_mode):
            raise OSError(errno.EACCES, "not a regular file", path)
        reopen = flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)
        return os.open(f"/proc/self/fd/{path_fd}", reopen | os.O_CLOEXEC | os.O_NOCTTY)
    finally:
        os.close(path_fd)


def _components(path: bytes) -> list[bytes]:
    """The components of `path` as a stack: the next one is at the end."""
    return [part for part in reversed(path.split(b"/")) if part not in (b"", b".")]


def _walk_open(root_fd: int, path: bytes, flags: int, mode: int) -> int:
    pending = _components(path)
    dirs: list[int] = []  # fds of the directories walked into; `..` pops one
    follow_last = not flags & os.O_NOFOLLOW
    links = 0
    try:
        while pending:
            name = pending.pop()
            current = dirs[-1] if dirs else root_fd
            if name == b"..":
                if not dirs:
                    raise OSError(errno.EXDEV, "path escapes the server directory", path)
                os.close(dirs.pop())
                continue
            last = not pending
            if _is_symlink(name, current) and (follow_last or not last):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=current)
                if target.startswith(b"/"):
                    raise OSError(errno.EXDEV, "symlink escapes the server directory", path)
                pending.extend(_components(target))
                continue
            # O_NOFOLLOW: a symlink swapped in since the check fails instead of leading out.
            if last:
                return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=current)
            step = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            dirs.append(os.open(name, step, dir_fd=current))
        current = dirs[-1] if dirs else root_fd
        return os.open(".", flags & ~os.O_CREAT | os.O_CLOEXEC, dir_fd=current)
    finally:
        for fd in dirs:
            os.close(fd)


def _is_symlink(name: bytes, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False  # a name to create, or ENOENT from the open that follows


def split_parent(path: bytes) -> tuple[bytes, bytes]:
    """(parent, name) of a relative path; the name is never empty, `.` or `..`."""
    trimmed = path.rstrip(b"/")
    parent, _, name = trimmed.rpartition(b"/")
    if name in (b"", b".", b".."):
        raise OSError(errno.EINVAL, "path names no entry", path)
    return parent, name


def open_parent_beneath(root_fd: int, path: bytes) -> tuple[int, bytes]:
    """An O_PATH fd of `path`'s directory (resolved beneath the root) and the final name.

    The caller closes the fd and acts on the name with *at() calls that do not
    follow a final symlink, so the entry itself is what gets removed, renamed or read.
    """
    parent, name = split_parent(path)
    return open_beneath(root_fd, parent, os.O_PATH | os.O_DIRECTORY), name
