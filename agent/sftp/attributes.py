"""Applying SFTP attributes (size, mode, times) to a file resolved beneath a root."""

from __future__ import annotations

import errno
import os
import stat

from asyncssh import SFTPAttrs

MODE_MASK = 0o1777  # setuid/setgid never come from a client


def proc_path(fd: int) -> str:
    """The /proc path that reaches exactly the inode behind `fd`."""
    return f"/proc/self/fd/{fd}"


def apply_attrs(fd: int, attrs: SFTPAttrs, info: os.stat_result) -> None:
    """Set size, permissions and times on the inode behind `fd` (an O_PATH fd will do).

    Through /proc/self/fd: the exact inode resolved beneath the root, whatever happens
    to the path meanwhile (chmod and utime have no O_PATH fd variants).
    """
    check_owner(attrs, info)
    if attrs.size is not None:
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "only a regular file has a size to set")
        wfd = os.open(proc_path(fd), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(wfd, attrs.size)
        finally:
            os.close(wfd)
    if attrs.permissions is not None:
        os.chmod(proc_path(fd), attrs.permissions & MODE_MASK)
    times = times_of(attrs, info)
    if times:
        os.utime(proc_path(fd), ns=times)


def check_owner(attrs: SFTPAttrs, info: os.stat_result) -> None:
    if (attrs.uid is not None and attrs.uid != info.st_uid) or (
        attrs.gid is not None and attrs.gid != info.st_gid
    ):
        raise OSError(errno.EPERM, "ownership is fixed to the container's user")


def times_of(attrs: SFTPAttrs, info: os.stat_result) -> tuple[int, int] | None:
    if attrs.atime is None and attrs.mtime is None:
        return None
    atime = attrs.atime * 10**9 + (attrs.atime_ns or 0) if attrs.atime is not None else None
    mtime = attrs.mtime * 10**9 + (attrs.mtime_ns or 0) if attrs.mtime is not None else None
    return (
        atime if atime is not None else info.st_atime_ns,
        mtime if mtime is not None else info.st_mtime_ns,
    )
