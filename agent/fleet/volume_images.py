"""Disk limits the kernel enforces: a filesystem image per volume.

The kernels this runs on have no quota support (no CONFIG_QUOTA), so a volume with a
disk limit is a sparse file, `<agent data_dir>/images/<volume>.ext4`, formatted ext4
and loop-mounted `nosuid,nodev` at the volume's data directory. A write beyond the
limit fails with ENOSPC, whoever makes it (the container, SFTP, the file API), and
the host's filesystem holds no more than the image's blocks in use.

- Made once per volume (`mkfs.ext4` of a sparse file takes tens of milliseconds, so
  no pool of ready images is kept), before the container is created, never on the
  start path.
- Resized to the limit it is given: growing extends the file and the filesystem
  (online, or offline when the host withholds CAP_SYS_RESOURCE, which online resize
  needs: then only while nothing uses the mount, i.e. before a start); lowering is
  refused below what the volume uses (:class:`DiskLimitTooLow`), else done offline.
- Mounted again by :meth:`VolumeImages.restore` after a reboot or agent restart.
- Released (unmounted, its loop device freed by autoclear, the file deleted) with
  the volume's data.

A volume without a limit keeps its bind mount (agent/fleet/data_dir.py); a volume
that had an image keeps it when its limit is removed (its data lives there).
Everything here blocks: call it from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from agent.fleet.mounts import mount_source, release_mount
from common.logging import get_logger

log = get_logger(__name__)
IMAGE_SUFFIX = ".ext4"
BLOCK = 4096


class VolumeImageError(Exception):
    """A volume image could not be made, mounted or resized (the message says why)."""


class DiskLimitTooLow(VolumeImageError):
    """A lower limit was asked than the volume already uses."""


def _run(*argv: str, fine: tuple[int, ...] = (0,)) -> str:
    """Run `argv`; its output. VolumeImageError with its last line of error otherwise."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode not in fine:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise VolumeImageError(f"{argv[0]} failed: {detail[-1] if detail else done.returncode}")
    return done.stdout


def is_own_filesystem(path: Path) -> bool:
    """True when `path` is the root of a filesystem of its own (an image's mount), not
    part of its parent's (a bind mount of itself is not)."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def used_bytes(path: Path) -> int:
    """What the filesystem at `path` holds (statfs: no directory walk)."""
    stats = os.statvfs(path)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


#: Online grows tried before the offline one (see `_grow_online`).
GROW_ATTEMPTS = 3
#: Seconds an unmounted image's loop device may take to go before an offline resize
#: gives up (autoclear frees it once its last opener, e.g. udev's probe, closes it).
DETACH_WAIT = 5.0


def limit_bytes(path: Path) -> int:
    """The room the filesystem at `path` offers its files (statfs)."""
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize


def _device_bytes(device: str) -> int:
    """The size of block device `device` as the kernel sees it (-1 when unreadable)."""
    try:
        sectors = Path(f"/sys/class/block/{Path(device).name}/size").read_text()
    except OSError:
        return -1
    return int(sectors) * 512


def _loop_devices(image: Path) -> list[str]:
    """The loop devices bound to `image` (losetup -j compares device and inode)."""
    return _run("losetup", "--noheadings", "--output", "NAME", "--associated", str(image)).split()


def _wait_detached(volume: str, image: Path) -> None:
    """Return once no loop device is bound to `image`; VolumeImageError after
    DETACH_WAIT. Offline work needs it: e2fsck and resize2fs change the file under a
    lingering device, and `mount -o loop` takes such a device again (libmount reuses a
    device bound to the same file), with its old size and cached blocks."""
    deadline = time.monotonic() + DETACH_WAIT
    while devices := _loop_devices(image):
        if time.monotonic() > deadline:
            raise VolumeImageError(
                f"volume {volume} is in use: its loop device {devices[0]} is still open, "
                "so its disk limit cannot change now (try again when the server is stopped)"
            )
        time.sleep(0.05)


def _rounded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


class VolumeImages:
    """The ext4 images of the volumes under `<agent_dir>/images`."""

    def __init__(self, agent_dir: Path) -> None:
        self.root = agent_dir / "images"

    def image(self, volume: str) -> Path:
        return self.root / f"{volume}{IMAGE_SUFFIX}"

    def has(self, volume: str) -> bool:
        return self.image(volume).exists()

    def volumes(self) -> list[str]:
        """Every volume that has an image."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(IMAGE_SUFFIX)] for p in self.root.glob(f"*{IMAGE_SUFFIX}"))

    def ensure(
        self, volume: str, data_dir: Path, size: int, owner: tuple[int, int], *, resize: bool = True
    ) -> None:
        """`data_dir` is the mounted image of `volume`, `size` bytes (made, mounted, and
        with `resize` resized as needed); files already in a directory without an image
        move in. DiskLimitTooLow when `size` is below what the volume uses."""
        size = _rounded(size)
        image = self.image(volume)
        if not image.exists():
            self._make(image, size, owner)
            self._mount_moving_files_in(image, data_dir)
        elif not is_own_filesystem(data_dir):
            self.mount(volume, data_dir)
        if resize and image.stat().st_size != size:
            self.resize(volume, data_dir, size)

    def _make(self, image: Path, size: int, owner: tuple[int, int]) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = image.with_suffix(".partial")
        with open(partial, "wb") as sparse:
            sparse.truncate(size)
        # No reserved blocks (the limit is the tenant's), no lost+found in its view.
        _run(
            "mkfs.ext4", "-q", "-F", "-m", "0",
            "-E", f"root_owner={owner[0]}:{owner[1]}", str(partial),
        )  # fmt: skip
        partial.replace(image)
        log.info("volume_image_made", image=str(image), size=size)

    def mount(self, volume: str, data_dir: Path) -> None:
        """Mount `volume`'s image at `data_dir` (nosuid,nodev); its loop device is freed
        by itself once the last mount of it goes (autoclear)."""
        data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        release_mount(data_dir)  # its bind mount, if any
        _run("mount", "-o", "loop,nosuid,nodev", str(self.image(volume)), str(data_dir))
        with contextlib.suppress(FileNotFoundError, OSError):
            (data_dir / "lost+found").rmdir()

    def _mount_moving_files_in(self, image: Path, data_dir: Path) -> None:
        data_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        volume = image.name[: -len(IMAGE_SUFFIX)]
        if not any(data_dir.iterdir()):
            self.mount(volume, data_dir)
            return
        # A volume that had no limit: its files move into the image first.
        with tempfile.TemporaryDirectory(dir=self.root) as staging:
            _run("mount", "-o", "loop,nosuid,nodev", str(image), staging)
            try:
                with contextlib.suppress(OSError):
                    (Path(staging) / "lost+found").rmdir()
                _run("cp", "-a", "--", f"{data_dir}/.", staging)
            finally:
                _run("umount", staging)
        owner = os.stat(data_dir)
        for entry in list(data_dir.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self.mount(volume, data_dir)
        os.chown(data_dir, owner.st_uid, owner.st_gid)
        os.chmod(data_dir, owner.st_mode & 0o777)

    def resize(self, volume: str, data_dir: Path, size: int) -> None:
        """Give `volume` `size` bytes: DiskLimitTooLow below its use; VolumeImageError
        when it must be done offline and its mount is in use (a running server)."""
        size = _rounded(size)
        image = self.image(volume)
        current = image.stat().st_size
        if size < current:
            in_use = used_bytes(data_dir) if is_own_filesystem(data_dir) else 0
            if size < in_use + (current - limit_bytes(data_dir) if in_use else 0):
                raise DiskLimitTooLow(
                    f"volume {volume} uses {in_use} bytes: its disk limit cannot go below that"
                )
            self._offline(volume, data_dir, size)
        elif size > current:
            with open(image, "r+b") as sparse:
                sparse.truncate(size)
            try:
                if not self._grow_online(data_dir):
                    self._offline(volume, data_dir, size, grow=True)
            except VolumeImageError:
                # The image's size is the record of the filesystem's: a grow that did
                # not happen must not look done to the next ensure().
                with open(image, "r+b") as sparse:
                    sparse.truncate(current)
                raise
        log.info("volume_image_resized", volume=volume, size=size, before=current)

    def _grow_online(self, data_dir: Path) -> bool:
        device = mount_source(data_dir)
        if device is None or not device.startswith("/dev/loop"):
            return False
        before = limit_bytes(data_dir)
        for attempt in range(GROW_ATTEMPTS):
            _run("losetup", "-c", device)
            try:
                _run("resize2fs", device)
            except VolumeImageError as exc:
                # No CAP_SYS_RESOURCE (EPERM): offline, if the mount is free.
                log.info("volume_grow_offline", device=device, reason=str(exc))
                return False
            if limit_bytes(data_dir) > before:
                return True
            # resize2fs found nothing to do: the loop device had not taken the file's
            # new size yet (seen once under load). Ask again rather than report done.
            log.warning(
                "volume_grow_not_seen",
                device=device,
                device_bytes=_device_bytes(device),
                limit=limit_bytes(data_dir),
                attempt=attempt + 1,
            )
            time.sleep(0.1 * (attempt + 1))
        return False

    def _offline(self, volume: str, data_dir: Path, size: int, *, grow: bool = False) -> None:
        image = self.image(volume)
        mounted = is_own_filesystem(data_dir)
        before = limit_bytes(data_dir) if mounted else 0
        if mounted:
            try:
                _run("umount", str(data_dir))  # never lazily: blocks must not move in use
            except VolumeImageError as exc:
                raise VolumeImageError(
                    f"volume {volume} is in use: its disk limit changes when the server "
                    "is stopped (this host does not allow resizing a mounted filesystem)"
                ) from exc
        try:
            _wait_detached(volume, image)
            _run("e2fsck", "-f", "-p", str(image), fine=(0, 1))  # 1: errors corrected
            _run("resize2fs", str(image), f"{size // 1024}K")
            with open(image, "r+b") as sparse:
                sparse.truncate(size)
        finally:
            if mounted:
                self.mount(volume, data_dir)
        if grow and mounted and limit_bytes(data_dir) <= before:
            # Not an error to undo: the image's filesystem was resized, and truncating
            # the file back under it would cut it. Say so, for the next look.
            log.warning(
                "volume_grow_not_seen_offline",
                volume=volume,
                size=size,
                limit=limit_bytes(data_dir),
                device=mount_source(data_dir),
            )

    def restore(self, volumes_root: Path) -> None:
        """Mount every image that is not mounted (after a reboot or agent restart)."""
        for volume in self.volumes():
            data_dir = volumes_root / volume
            if not is_own_filesystem(data_dir):
                self.mount(volume, data_dir)

    def release(self, volume: str, data_dir: Path) -> None:
        """Unmount (lazily: an SFTP session may hold it) and delete `volume`'s image."""
        if data_dir.exists():
            release_mount(data_dir)
        self.image(volume).unlink(missing_ok=True)
