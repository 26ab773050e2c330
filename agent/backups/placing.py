"""Moving a restore's staged entries into a server's volume without following links.

The volume belongs to the tenant: while a restore runs (its server stopped), the
tenant can still rename entries in it over SFTP or the file API, and the container
may have left symbolic links there that point anywhere on the host (`/etc`). So no
write below the volume ever resolves a path name that the tenant can change: the
volume and every directory the restore creates are held open as file descriptors
(O_NOFOLLOW), entries are created relative to them with O_EXCL (a link that appeared
in the meantime is never written through: the restore fails instead), and owners,
modes and times are set on the descriptors just created, not by name afterwards.

All functions block (call them from a worker thread).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

#: ext4's own directory at the top of a volume with a disk limit (its image).
LOST_AND_FOUND = "lost+found"
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SENDFILE_CHUNK = 1 << 24


def move_into(staging: Path, directory: Path, wipe: bool) -> None:
    """Move the staged entries into `directory`, each replacing its namesake; with
    `wipe`, every other entry (but ext4's lost+found) goes first."""
    staging_fd = os.open(staging, _DIRECTORY)
    try:
        volume_fd = os.open(directory, _DIRECTORY)
        try:
            staged = sorted(os.listdir(staging_fd))
            remove_replaced(volume_fd, set(staged), wipe)
            place_staged(staging_fd, volume_fd, staged)
        finally:
            os.close(volume_fd)
    finally:
        os.close(staging_fd)


def remove_replaced(volume_fd: int, staged: set[str], wipe: bool) -> None:
    """Remove the volume's entries named in `staged` (all but lost+found with `wipe`),
    links as links."""
    for name in os.listdir(volume_fd):
        if name in staged or (wipe and name != LOST_AND_FOUND):
            _remove(volume_fd, name)


def _remove(parent_fd: int, name: str) -> None:
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=parent_fd)  # fd-based: never follows a link
    else:
        os.unlink(name, dir_fd=parent_fd)


def place_staged(staging_fd: int, volume_fd: int, names: list[str]) -> None:
    """Rename each staged entry into the volume (replacing whatever has the name now,
    a link included, without following it); across filesystems (a volume with a disk
    limit is an image of its own) copy it instead (:func:`copy_entry`)."""
    for name in names:
        try:
            os.rename(name, name, src_dir_fd=staging_fd, dst_dir_fd=volume_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_entry(staging_fd, volume_fd, name)


def copy_entry(source_fd: int, target_fd: int, name: str) -> None:
    """Copy entry `name` of directory `source_fd` into directory `target_fd` with its
    owner, mode and times: a file, a link (as a link) or a directory tree; other kinds
    (FIFOs, sockets, devices) are skipped. FileExistsError when `name` exists in the
    target (the tenant put it there since it was removed)."""
    info = os.stat(name, dir_fd=source_fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(name, dir_fd=source_fd), name, dir_fd=target_fd)
        os.chown(name, info.st_uid, info.st_gid, dir_fd=target_fd, follow_symlinks=False)
        times = (info.st_atime_ns, info.st_mtime_ns)
        os.utime(name, ns=times, dir_fd=target_fd, follow_symlinks=False)
    elif stat.S_ISDIR(info.st_mode):
        os.mkdir(name, 0o700, dir_fd=target_fd)
        _copy_directory(source_fd, target_fd, name, info)
    elif stat.S_ISREG(info.st_mode):
        _copy_file(source_fd, target_fd, name, info)


def _copy_directory(source_fd: int, target_fd: int, name: str, info: os.stat_result) -> None:
    source = os.open(name, _DIRECTORY, dir_fd=source_fd)
    try:
        target = os.open(name, _DIRECTORY, dir_fd=target_fd)  # a link swapped in: ELOOP
        try:
            for child in os.listdir(source):
                copy_entry(source, target, child)
            _take_attributes(target, info)
        finally:
            os.close(target)
    finally:
        os.close(source)


def _copy_file(source_fd: int, target_fd: int, name: str, info: os.stat_result) -> None:
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=source_fd)
    try:
        create = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        target = os.open(name, create, 0o600, dir_fd=target_fd)
        try:
            while os.sendfile(target, source, None, _SENDFILE_CHUNK):
                pass
            _take_attributes(target, info)
        finally:
            os.close(target)
    finally:
        os.close(source)


def _take_attributes(fd: int, info: os.stat_result) -> None:
    """Owner, then mode (a chown clears set-id bits), then times, of `info` on `fd`."""
    os.fchown(fd, info.st_uid, info.st_gid)
    os.fchmod(fd, stat.S_IMODE(info.st_mode))
    os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
