"""A server's data directory on the host: its input files, its owner, its mount.

`<agent data_dir>/volumes/<volume id>` is bind-mounted into the container: the volume
id is the slot's (deployment, ordinal), the same whichever replica runs it (see
docs/stateful.md); specs without one name the directory by server id. Three
guarantees hold for it (see docs/security.md):

- It belongs to the uid:gid the container runs as (mapped through the engine's
  user-namespace remapping, if any), so an unprivileged container can write it.
  Data written by another owner (servers that ran as root before) is re-owned once:
  a marker outside the directory, `<agent data_dir>/ownership/<volume id>`, records
  the owner it was last given.
- It is a mount point of itself with `nosuid,nodev`, so a setuid binary or a device
  node written into it by a container means nothing on the host (nor in the
  container, whose bind mount inherits the flags). A volume with a disk limit is
  instead the loop mount of its own ext4 image, with the same flags
  (agent/fleet/volume_images.py).
- Nothing here follows a symlink a container made: the re-own walks with directory
  fds and never follows links, input files are opened beneath the directory.

Everything here blocks: call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from agent.files.confine import open_beneath, open_regular_beneath
from agent.fleet.inputs import StagedInputs, copy_staged
from agent.fleet.mounts import (
    mount_options,
    release_mount,
    release_mounts_beneath,
    secure_mount,
)
from agent.fleet.spec import relative_file_path, volume_name
from agent.fleet.volume_images import (
    VolumeImageError,
    VolumeImages,
    is_own_filesystem,
    used_bytes,
)
from agent.runtime import IdMapping, InvalidSpec
from common.logging import get_logger
from protos import agent_pb2 as pb

__all__ = [
    "ServerVolumes",
    "chown_tree",
    "mount_options",
    "prepare_data_dir",
    "release_mount",
    "release_mounts_beneath",
    "secure_mount",
]
log = get_logger(__name__)

Owner = tuple[int, int]


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


def prepare_data_dir(
    data_dir: Path, files: list[pb.InputFile], owner: Owner, staged: StagedInputs | None = None
) -> bool:
    """Create the data directory (0750, given to `owner`) and write the input files,
    each owned by `owner`, resolved beneath the directory (a symlink in it that
    points out is refused): their `content`, or for a `source` file its copy staged
    by :func:`agent.fleet.inputs.stage_inputs` (`staged`, by path; InvalidSpec when
    missing). True when the directory was created now (so a failed create may remove
    it while it is still empty)."""
    staged = staged or {}
    missing = [item.path for item in files if item.source and item.path not in staged]
    if missing:
        raise InvalidSpec(f"input files {missing} were not fetched")
    created = not data_dir.exists()
    data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    if created:
        os.chown(data_dir, *owner, follow_symlinks=False)
    if not files:
        return created
    root = os.open(data_dir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for item in files:
            _write_input_file(root, item, owner, staged.get(item.path))
    finally:
        os.close(root)
    return created


def _write_input_file(root: int, item: pb.InputFile, owner: Owner, staged: Path | None) -> None:
    parts = relative_file_path(item.path).parts
    for depth in range(1, len(parts)):
        _make_dir_beneath(root, parts[:depth], owner)
    fd = open_regular_beneath(
        root, os.fsencode(item.path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    )
    try:
        if staged is not None:
            copy_staged(staged, fd)
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
        self.images = VolumeImages(agent_dir)

    def path(self, volume: str) -> Path:
        """The data directory of the volume named `volume` (see :func:`volume_name`)."""
        return self.root / volume

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
        self.images.restore(self.root)  # before the bind mounts: never over an image
        for entry in os.scandir(self.root):
            if entry.is_dir(follow_symlinks=False):
                secure_mount(Path(entry.path))

    def prepare(
        self, spec: pb.ServerSpec, *, resize: bool = True, staged: StagedInputs | None = None
    ) -> bool:
        """Before creating `spec`'s container: the directory with its input files (those
        fetched by `source` from `staged`), owned and mounted as the module says; True
        when the directory was created now. Without `resize` an image keeps its size (a
        rolling update prepares while the old container still uses the mount; the
        create after it resizes)."""
        data_dir = self.path(volume_name(spec))
        created = not data_dir.exists()
        self._sized(spec, resize=resize)
        prepare_data_dir(data_dir, list(spec.files), self.owner_of(spec), staged)
        if resize:
            self.ready(spec)
        else:
            self._ready(spec, resize=False)
        return created

    def _sized(self, spec: pb.ServerSpec, *, resize: bool = True) -> None:
        """A volume with a disk limit (or an image from an earlier limit) is its image,
        mounted and (with `resize`) of the size the spec gives; InvalidSpec when that
        cannot be."""
        volume, limit = volume_name(spec), spec.resources.disk_bytes
        if not limit and not self.images.has(volume):
            return
        data_dir = self.path(volume)
        if not limit:  # the limit was lifted: the data stays in its image, as large
            limit = self.images.image(volume).stat().st_size
        try:
            self.images.ensure(volume, data_dir, limit, self.owner_of(spec), resize=resize)
        except VolumeImageError as exc:
            raise InvalidSpec(str(exc)) from exc

    def ready(self, spec: pb.ServerSpec) -> None:
        """Before each start: owned by the server's user (re-owned once after a change
        of owner) and mounted nosuid,nodev."""
        self._ready(spec, resize=True)

    def _ready(self, spec: pb.ServerSpec, *, resize: bool) -> None:
        volume = volume_name(spec)
        data_dir = self.path(volume)
        self._sized(spec, resize=resize)
        if own_once(data_dir, self.owner_of(spec), self.markers / volume):
            log.info("data_dir_reowned", server=spec.id, owner=self.owner_of(spec))
        secure_mount(data_dir)

    def listing(self) -> list[pb.VolumeInfo]:
        """Every data directory here (cheap: a directory listing, statfs of images)."""
        found: list[pb.VolumeInfo] = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                info = pb.VolumeInfo(id=entry.name)
                if self.images.has(entry.name):
                    info.disk_limit_bytes = self.images.image(entry.name).stat().st_size
                    info.used_bytes = self.disk_used(entry.name) or 0
                found.append(info)
        return sorted(found, key=lambda v: v.id)

    def check_limit(self, spec: pb.ServerSpec) -> None:
        """InvalidSpec when `spec`'s disk limit is below what its volume holds (checked
        before a running server is replaced, so a refused spec leaves it untouched)."""
        volume, limit = volume_name(spec), spec.resources.disk_bytes
        used = self.disk_used(volume)
        if limit and used is not None and limit < used:
            raise InvalidSpec(
                f"volume {volume} uses {used} bytes: its disk limit cannot go below that"
            )

    def disk_used(self, volume: str) -> int | None:
        """What a volume with an image holds (statfs, cheap); None for one without."""
        data_dir = self.path(volume)
        return used_bytes(data_dir) if is_own_filesystem(data_dir) else None

    def discard_empty(self, volume: str) -> None:
        """Remove a directory a failed create made, if it is still empty."""
        data_dir = self.path(volume)
        with os.scandir(data_dir) as entries:
            if next(entries, None) is not None:
                return  # SFTP works before the container exists: the user's files
        if self.images.has(volume):
            self.images.release(volume, data_dir)
        release_mount(data_dir)
        with contextlib.suppress(OSError):
            data_dir.rmdir()

    def holds(self, volume: str) -> bool:
        """Whether this node has any data of `volume` (its directory or its image)."""
        return self.path(volume).exists() or self.images.has(volume)

    def delete(self, volume: str) -> None:
        """Unmount and delete a volume's data directory and its ownership marker."""
        data_dir = self.path(volume)
        self.images.release(volume, data_dir)
        release_mount(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
        (self.markers / volume).unlink(missing_ok=True)
