"""Mounts of data directories: a bind mount of itself with nosuid,nodev, and their
release (see docs/security.md). Everything here blocks: call it from a worker thread."""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND = 0x20, 0x1000
MNT_DETACH = 0x2
SECURE_OPTIONS = frozenset({"nosuid", "nodev"})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


# ---- mounts --------------------------------------------------------------------------


def _topmost(path: Path) -> list[bytes] | None:
    """The /proc/self/mountinfo fields of the topmost mount AT `path` (None: none)."""
    wanted = os.fsencode(os.path.realpath(path))
    found: list[bytes] | None = None
    with open("/proc/self/mountinfo", "rb") as table:
        for line in table:
            fields = line.split(b" ")
            if _unescape(fields[4]) == wanted:
                found = fields  # later lines are on top
    return found


def mount_options(path: Path) -> frozenset[str] | None:
    """The per-mount options of the topmost mount AT `path`; None when it is no mount
    point."""
    fields = _topmost(path)
    return None if fields is None else frozenset(fields[5].decode().split(","))


def mount_source(path: Path) -> str | None:
    """The source (e.g. `/dev/loop3`) of the topmost mount AT `path`; None when none."""
    fields = _topmost(path)
    if fields is None:
        return None
    return _unescape(fields[fields.index(b"-") + 2]).decode(errors="replace")


def _unescape(field: bytes) -> bytes:
    text = field.decode("latin-1")
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text).encode("latin-1")


def _mount(source: bytes | None, target: bytes, flags: int) -> None:
    if _libc.mount(source, target, None, flags, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount {target.decode(errors='replace')}: {os.strerror(code)}")


def secure_mount(path: Path) -> None:
    """Make `path` a bind mount of itself with nosuid,nodev (idempotent).

    OSError (EPERM) when the agent may not mount: it must run as root on the host, or
    in the host's mount namespace with CAP_SYS_ADMIN."""
    target = os.fsencode(os.path.realpath(path))
    options = mount_options(path)
    if options is not None and options >= SECURE_OPTIONS:
        return
    if options is None:
        _mount(target, target, MS_BIND)
        options = mount_options(path) or frozenset()
    # A bind remount sets the per-mount flags anew: keep a noexec the host chose.
    keep = MS_NOEXEC if "noexec" in options else 0
    _mount(None, target, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | keep)


def release_mount(path: Path) -> None:
    """Detach every mount at `path` (none is fine). Lazily: an SFTP session may still
    hold the directory open, and removal must not wait for it."""
    target = os.fsencode(os.path.realpath(path))
    while mount_options(path) is not None:
        if _libc.umount2(target, MNT_DETACH) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"umount {path}: {os.strerror(code)}")


def release_mounts_beneath(top: Path) -> None:
    """Detach every mount at or beneath `top` (a test's or a removed node's files)."""
    prefix = os.fsencode(os.path.realpath(top))
    with open("/proc/self/mountinfo", "rb") as table:
        points = {_unescape(line.split(b" ")[4]) for line in table}
    for point in sorted(points, reverse=True):  # deepest first
        if point == prefix or point.startswith(prefix + b"/"):
            release_mount(Path(os.fsdecode(point)))
