"""A server's data directory on the host: its input files, its owner, its mount.

`<agent data_dir>/volumes/<server id>` is bind-mounted into the container. Three
guarantees hold for it (see docs/security.md):

- It belongs to the uid:gid the container runs as (mapped through the engine's
  user-namespace remapping, if any), so an unprivileged container can write it.
  Data written by another owner (servers that ran as root before) is re-owned once:
  a marker outside the directory, `<agent data_dir>/ownership/<server id>`, records
  the owner it was last given.
- It is a mount point of itself with `nosuid,nodev`, so a setuid binary or a device
  node written into it by a container means nothing on the host (nor in the
  container, whose bind mount inherits the flags).
- Nothing here follows a symlink a container made: the re-own walks with directory
  fds and never follows links, input files are opened beneath the directory.

Everything here blocks: call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
from pathlib import Path

from agent.files.confine import open_beneath
from agent.fleet.spec import relative_file_path
from agent.runtime import IdMapping
from common.logging import get_logger
from protos import agent_pb2 as pb

log = get_logger(__name__)
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

Owner = tuple[int, int]


# ---- mounts --------------------------------------------------------------------------


def mount_options(path: Path) -> frozenset[str] | None:
    """The per-mount options of the topmost mount AT `path`; None when it is no mount
    point."""
    wanted = os.fsencode(os.path.realpath(path))
    found: frozenset[str] | None = None
    with open("/proc/self/mountinfo", "rb") as table:
        for line in table:
            fields = line.split(b" ")
            if _unescape(fields[4]) == wanted:
                found = frozenset(fields[5].decode().split(","))  # later lines are on top
    return found


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


# ---- ownership -------------------------------------------------------------------------


def own_once(data_dir: Path, owner: Owner, marker: Path) -> bool:
    """Give `data_dir` and everything beneath it to `owner`, unless `marker` records
    that this was done for this same owner; True when it re-owned now."""
    wanted = f"{owner[0]}:{owner[1]}"
    with contextlib.suppress(FileNotFoundError):
        if marker.read_text(encoding="ascii").strip() == wanted:
            return False
    chown_tree(data_dir, owner)
    marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = marker.with_suffix(".tmp")
    partial.write_text(wanted + "\n", encoding="ascii")
    partial.replace(marker)
    return True


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A listed name that is no longer a directory: gone, replaced by a file or a symlink.
_NOT_A_DIRECTORY = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


class TreeChanged(OSError):
    """The tree was moved under the walk (a directory is no longer where it was)."""


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _chown_entries(fd: int, uid: int, gid: int) -> list[str]:
    """lchown every entry of the directory `fd`; the names of its subdirectories."""
    subdirectories: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # removed while walking
                os.chown(entry.name, uid, gid, dir_fd=fd, follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(entry.name)
    return subdirectories


def chown_tree(top: Path, owner: Owner) -> None:
    """lchown `top` and every entry beneath it, never following a symlink, at any
    depth: an iterative depth-first walk that holds one directory fd at a time (not
    one per level: no recursion limit, no EMFILE). Each directory is entered by name
    relative to its parent's fd with O_NOFOLLOW|O_DIRECTORY (a symlink swapped in is
    refused, and skipped); the walk climbs back through `..` and checks that it
    arrived at the (device, inode) it left, raising TreeChanged otherwise."""
    uid, gid = owner
    fd = os.open(top, _DIRECTORY_FLAGS)
    try:
        os.fchown(fd, uid, gid)
        # One frame per level being walked: the directory's identity and the names
        # of its subdirectories not yet visited (no fd).
        stack = [(_identity(fd), _chown_entries(fd, uid, gid))]
        while stack:
            pending = stack[-1][1]
            if pending:
                try:
                    child = os.open(pending.pop(), _DIRECTORY_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in _NOT_A_DIRECTORY:
                        continue
                    raise
                os.close(fd)
                fd = child
                stack.append((_identity(fd), _chown_entries(fd, uid, gid)))
                continue
            stack.pop()
            if stack:
                parent = os.open("..", _DIRECTORY_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = parent
                if _identity(fd) != stack[-1][0]:
                    raise TreeChanged(f"{top} changed while it was being re-owned")
    finally:
        os.close(fd)


# ---- creation -------------------------------------------------------------------------


def prepare_data_dir(data_dir: Path, files: list[pb.InputFile], owner: Owner) -> bool:
    """Create the data directory (0750, given to `owner`) and write the input files,
    each owned by `owner`, resolved beneath the directory (a symlink in it that
    points out is refused). True when the directory was created now (so a failed
    create may remove it while it is still empty)."""
    created = not data_dir.exists()
    data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    if created:
        os.chown(data_dir, *owner, follow_symlinks=False)
    if not files:
        return created
    root = os.open(data_dir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for item in files:
            _write_input_file(root, item, owner)
    finally:
        os.close(root)
    return created


def _write_input_file(root: int, item: pb.InputFile, owner: Owner) -> None:
    parts = relative_file_path(item.path).parts
    for depth in range(1, len(parts)):
        _make_dir_beneath(root, parts[:depth], owner)
    fd = open_beneath(
        root, os.fsencode(item.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    )
    try:
        view = memoryview(item.content)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, item.mode & 0o777 or 0o644)  # never setuid, setgid or sticky
        os.fchown(fd, *owner)
    finally:
        os.close(fd)


def _make_dir_beneath(root: int, parts: tuple[str, ...], owner: Owner) -> None:
    parent = open_beneath(root, os.fsencode("/".join(parts[:-1])), os.O_PATH | os.O_DIRECTORY)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(parts[-1], 0o755, dir_fd=parent)
            os.chown(parts[-1], *owner, dir_fd=parent, follow_symlinks=False)
    finally:
        os.close(parent)


# ---- the node's volumes ----------------------------------------------------------------


class ServerVolumes:
    """Every server's data directory under `<agent data_dir>/volumes`.

    `container_user` is the (uid, gid) servers run as inside their containers unless
    their spec asks for root; `id_mapping` turns container ids into the host ids that
    own the files. Methods block: call them from a worker thread.
    """

    def __init__(
        self,
        agent_dir: Path,
        *,
        container_user: Owner,
        id_mapping: IdMapping | None = None,
    ) -> None:
        self.agent_dir = agent_dir
        self.root = agent_dir / "volumes"
        self.markers = agent_dir / "ownership"
        self.container_user = container_user
        self.id_mapping = id_mapping or IdMapping()

    def path(self, server_id: str) -> Path:
        return self.root / server_id

    def user_of(self, spec: pb.ServerSpec) -> str:
        """The `uid:gid` the server's processes run as, inside the container."""
        uid, gid = (0, 0) if spec.run_as_root else self.container_user
        return f"{uid}:{gid}"

    def owner_of(self, spec: pb.ServerSpec | None) -> Owner:
        """The host uid and gid that own the server's files (None: a server this node
        does not run, whose files get the default user's)."""
        uid, gid = (0, 0) if spec is not None and spec.run_as_root else self.container_user
        return self.id_mapping.host_ids(uid, gid)

    def restore(self) -> None:
        """At agent start, before any container starts: close the directories to other
        host users and put every existing data directory back under nosuid,nodev
        (mounts do not survive a reboot)."""
        # A remapped engine's root (an ordinary host uid) must still reach the bind
        # sources: search permission only, never a listing.
        mode = 0o711 if self.id_mapping.remapped else 0o700
        self.root.mkdir(parents=True, exist_ok=True)
        self.agent_dir.chmod(mode)
        self.root.chmod(mode)
        for entry in os.scandir(self.root):
            if entry.is_dir(follow_symlinks=False):
                secure_mount(Path(entry.path))

    def prepare(self, spec: pb.ServerSpec) -> bool:
        """Before creating `spec`'s container: the directory with its input files, owned
        and mounted as the module says; True when the directory was created now."""
        created = prepare_data_dir(self.path(spec.id), list(spec.files), self.owner_of(spec))
        self.ready(spec)
        return created

    def ready(self, spec: pb.ServerSpec) -> None:
        """Before each start: owned by the server's user (re-owned once after a change
        of owner) and mounted nosuid,nodev."""
        data_dir = self.path(spec.id)
        if own_once(data_dir, self.owner_of(spec), self.markers / spec.id):
            log.info("data_dir_reowned", server=spec.id, owner=self.owner_of(spec))
        secure_mount(data_dir)

    def discard_empty(self, server_id: str) -> None:
        """Remove a directory a failed create made, if it is still empty."""
        data_dir = self.path(server_id)
        with os.scandir(data_dir) as entries:
            if next(entries, None) is not None:
                return  # SFTP works before the container exists: the user's files
        release_mount(data_dir)
        with contextlib.suppress(OSError):
            data_dir.rmdir()

    def delete(self, server_id: str) -> None:
        """Unmount and delete a server's data directory and its ownership marker."""
        data_dir = self.path(server_id)
        release_mount(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        (self.markers / server_id).unlink(missing_ok=True)
