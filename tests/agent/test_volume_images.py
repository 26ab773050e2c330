"""Disk limits the kernel enforces: a real ext4 image per volume, loop-mounted at the
data directory (real mkfs.ext4, mount, resize2fs, e2fsck; no containers here)."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import pytest

from agent.fleet import volume_images
from agent.fleet.data_dir import ServerVolumes, mount_options
from agent.fleet.mounts import mount_source
from agent.fleet.volume_images import (
    DiskLimitTooLow,
    VolumeImages,
    is_own_filesystem,
    limit_bytes,
    used_bytes,
)
from agent.runtime import InvalidSpec
from protos import agent_pb2 as pb

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="loop mounts need root"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="needs e2fsprogs"),
]
MIB = 1 << 20


def _spec(disk: int, volume: str = "vol1") -> pb.ServerSpec:
    return pb.ServerSpec(id="server1", volume_id=volume, resources=pb.Resources(disk_bytes=disk))


def _fill(path: Path) -> int:
    """Write zeros into `path` until the filesystem refuses; bytes written."""
    written = 0
    chunk = b"\0" * MIB
    with pytest.raises(OSError, match="No space left") as full, open(path, "wb") as out:  # noqa: PT012
        while written < 256 * MIB:
            written += out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    assert full.value.errno == errno.ENOSPC
    return written


def test_a_volume_with_a_limit_is_its_own_filesystem_and_stops_at_the_limit(
    tmp_path: Path,
) -> None:
    volumes = ServerVolumes(tmp_path, container_user=(988, 988))
    volumes.restore()
    volumes.prepare(_spec(16 * MIB))
    data_dir = volumes.path("vol1")
    assert is_own_filesystem(data_dir)
    assert (mount_options(data_dir) or frozenset()) >= {"nosuid", "nodev"}
    assert (data_dir.stat().st_uid, data_dir.stat().st_gid) == (988, 988)
    assert not (data_dir / "lost+found").exists()
    written = _fill(data_dir / "big")
    assert written <= 16 * MIB
    image = volumes.images.image("vol1")
    assert image.stat().st_blocks * 512 <= 17 * MIB  # the host holds no more than that
    assert volumes.disk_used("vol1") == used_bytes(data_dir) >= written


def test_resize_up_keeps_files_lowering_below_use_is_refused(tmp_path: Path) -> None:
    volumes = ServerVolumes(tmp_path, container_user=(988, 988))
    volumes.prepare(_spec(16 * MIB))
    data_dir = volumes.path("vol1")
    (data_dir / "kept.txt").write_text("kept")
    (data_dir / "ten").write_bytes(b"\1" * 10 * MIB)
    before = limit_bytes(data_dir)
    volumes.ready(_spec(32 * MIB))
    assert limit_bytes(data_dir) > before + 14 * MIB
    assert (data_dir / "kept.txt").read_text() == "kept"
    with pytest.raises(InvalidSpec, match="cannot go below"):
        volumes.ready(_spec(8 * MIB))
    assert (data_dir / "kept.txt").read_text() == "kept"
    assert volumes.images.image("vol1").stat().st_size == 32 * MIB
    with pytest.raises(DiskLimitTooLow):
        volumes.images.resize("vol1", data_dir, 4 * MIB)


def _held_open(data_dir: Path) -> int:
    """An fd on the volume's loop device, as udev's probe holds one after an unmount
    (the device stays bound to the image until the last opener closes it)."""
    device = mount_source(data_dir)
    assert device is not None
    assert device.startswith("/dev/loop")
    return os.open(device, os.O_RDONLY)


def _offline_volume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[ServerVolumes, Path, int]:
    """A 16 MiB volume holding kept.txt that grows offline, as on a host that withholds
    CAP_SYS_RESOURCE; its data directory and limit."""
    volumes = ServerVolumes(tmp_path, container_user=(988, 988))
    volumes.prepare(_spec(16 * MIB))
    data_dir = volumes.path("vol1")
    (data_dir / "kept.txt").write_text("kept")
    monkeypatch.setattr(VolumeImages, "_grow_online", lambda _self, _data_dir: False)
    return volumes, data_dir, limit_bytes(data_dir)


def test_an_offline_grow_waits_for_the_old_loop_device_to_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volumes, data_dir, before = _offline_volume(tmp_path, monkeypatch)
    closer = threading.Timer(0.5, os.close, (_held_open(data_dir),))
    closer.start()
    try:
        volumes.ready(_spec(32 * MIB))
    finally:
        closer.join()
    # Mounted while the old device lingered, the volume would keep its 16 MiB.
    assert limit_bytes(data_dir) > before + 14 * MIB
    assert (data_dir / "kept.txt").read_text() == "kept"


def test_an_offline_grow_is_refused_while_the_loop_device_stays_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    volumes, data_dir, before = _offline_volume(tmp_path, monkeypatch)
    monkeypatch.setattr(volume_images, "DETACH_WAIT", 0.3)
    holder = _held_open(data_dir)
    try:
        with pytest.raises(InvalidSpec, match="is still open"):
            volumes.ready(_spec(32 * MIB))
    finally:
        os.close(holder)
    # Nothing changed: the same limit, the image's size its record, the files there.
    assert limit_bytes(data_dir) == before
    assert volumes.images.image("vol1").stat().st_size == 16 * MIB
    assert (data_dir / "kept.txt").read_text() == "kept"
    volumes.ready(_spec(32 * MIB))
    assert limit_bytes(data_dir) > before + 14 * MIB


def test_images_are_mounted_again_at_restart_and_released_with_the_data(
    tmp_path: Path,
) -> None:
    volumes = ServerVolumes(tmp_path, container_user=(988, 988))
    volumes.prepare(_spec(16 * MIB))
    data_dir = volumes.path("vol1")
    (data_dir / "kept.txt").write_text("kept")
    os.system(f"umount {data_dir}")  # noqa: S605 (what a reboot does to it)
    assert not is_own_filesystem(data_dir)
    ServerVolumes(tmp_path, container_user=(988, 988)).restore()
    assert is_own_filesystem(data_dir)
    assert (data_dir / "kept.txt").read_text() == "kept"
    volumes.delete("vol1")
    assert not data_dir.exists()
    assert VolumeImages(tmp_path).volumes() == []


def test_files_of_an_unlimited_volume_move_into_its_new_image(tmp_path: Path) -> None:
    volumes = ServerVolumes(tmp_path, container_user=(988, 988))
    volumes.prepare(_spec(0))
    data_dir = volumes.path("vol1")
    assert not is_own_filesystem(data_dir)
    (data_dir / "sub").mkdir()
    (data_dir / "sub" / "file.txt").write_text("moved")
    volumes.ready(_spec(16 * MIB))
    assert is_own_filesystem(data_dir)
    assert (data_dir / "sub" / "file.txt").read_text() == "moved"
    volumes.ready(_spec(0))  # a lifted limit keeps the data where it is
    assert is_own_filesystem(data_dir)
