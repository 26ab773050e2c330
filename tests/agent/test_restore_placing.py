"""A restore's staged entries reach the volume without following a link the tenant
put there, also while the restore runs (renaming entries over SFTP or the file API):
the whole class of "write or chown through a name the tenant can change".

The volume is on another filesystem than the staging directory (tmpfs under
/dev/shm), as a volume with a disk limit is, so entries are copied, not renamed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.backups.placing import move_into, place_staged

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners need root")
TENANT = 988


@pytest.fixture
def volume() -> Iterator[Path]:
    """A volume directory on a filesystem of its own (tmpfs)."""
    path = Path("/dev/shm") / f"encedeus-test-volume-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _outside(tmp_path: Path) -> Path:
    """A host directory the tenant's links point at, with a host file in it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("host file")
    return outside


def _outside_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert (outside / "precious").read_text() == "host file"
    assert (outside / "precious").stat().st_uid == 0
    assert outside.stat().st_uid == 0


def _stage(staging: Path, kind: str) -> None:
    entry = staging / "precious"
    if kind == "file":
        entry.write_text("from the backup")
    elif kind == "directory":
        entry.mkdir()
        (entry / "inner").write_text("from the backup")
    else:
        entry.symlink_to("elsewhere")
    os.lchown(entry, TENANT, TENANT)


def _place(staging: Path, volume: Path) -> None:
    staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    volume_fd = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
    try:
        place_staged(staging_fd, volume_fd, sorted(os.listdir(staging)))
    finally:
        os.close(staging_fd)
        os.close(volume_fd)


@pytest.mark.parametrize("kind", ["file", "directory", "link"])
@pytest.mark.parametrize("planted", ["to the host file", "to the host directory"])
def test_a_link_planted_after_the_removal_is_never_followed(
    tmp_path: Path, volume: Path, kind: str, planted: str
) -> None:
    """The tenant puts `precious -> <host>` back between the removal of the volume's
    `precious` and the copy of the staged one: the copy refuses (the restore fails),
    and nothing is written or re-owned on the host."""
    outside, staging = _outside(tmp_path), tmp_path / "staging"
    staging.mkdir()
    _stage(staging, kind)
    target = outside / "precious" if planted == "to the host file" else outside
    (volume / "precious").symlink_to(target)
    with pytest.raises(FileExistsError):
        _place(staging, volume)
    _outside_untouched(outside)
    assert (volume / "precious").is_symlink()


def _swap_on_first_copy(volume: Path, outside: Path) -> Callable[..., int]:
    """os.sendfile that, on its first call, does what a tenant racing the restore
    over SFTP does: moves `world/region` away and puts a link to the host there."""
    real, swapped = os.sendfile, list[bool]()

    def sendfile(*args: int | None) -> int:
        if not swapped:
            swapped.append(True)
            (volume / "world" / "region").rename(volume / "moved-away")
            (volume / "world" / "region").symlink_to(outside)
        return real(*args)  # type: ignore[arg-type]

    return sendfile


def test_a_directory_swapped_for_a_link_during_the_copy_is_not_followed(
    tmp_path: Path, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the restore has made a directory, renaming it away and linking its name
    to the host leads nothing there: no file written, no owner changed (the copy goes
    on into the directory it made, wherever the tenant moved it in the volume)."""
    outside, staging = _outside(tmp_path), tmp_path / "staging"
    region = staging / "world" / "region"
    region.mkdir(parents=True)
    for name in ("a.mca", "precious"):
        (region / name).write_text(f"backup of {name}")
    for path in (staging / "world", region, region / "a.mca", region / "precious"):
        os.chown(path, TENANT, TENANT)
    monkeypatch.setattr(os, "sendfile", _swap_on_first_copy(volume, outside))
    move_into(staging, volume, wipe=False)
    _outside_untouched(outside)
    moved = volume / "moved-away"
    assert sorted(p.name for p in moved.iterdir()) == ["a.mca", "precious"]
    assert (moved / "precious").stat().st_uid == TENANT


def test_copied_entries_keep_contents_owners_modes_and_links(tmp_path: Path, volume: Path) -> None:
    """Across filesystems the copy is faithful: contents, owners, modes, times, links
    as links (an absolute target stays a link, not a copy of the host's file)."""
    staging = tmp_path / "staging"
    (staging / "world").mkdir(parents=True)
    (staging / "world" / "level.dat").write_bytes(os.urandom(300_000))
    (staging / "run.sh").write_text("#!/bin/sh\n")
    (staging / "run.sh").chmod(0o750)
    (staging / "world" / "hosts").symlink_to("/etc/hosts")
    for path in (staging / "world", staging / "world" / "level.dat", staging / "run.sh"):
        os.chown(path, TENANT, TENANT + 1)
    os.utime(staging / "run.sh", ns=(1_000_000_000, 2_000_000_000))
    expected = {
        name: ((staging / name).read_bytes(), (staging / name).stat().st_mode)
        for name in ("world/level.dat", "run.sh")
    }
    (volume / "run.sh").write_text("tampered")
    move_into(staging, volume, wipe=True)
    for name, (content, mode) in expected.items():
        info = (volume / name).stat()
        assert ((volume / name).read_bytes(), info.st_mode) == (content, mode)
        assert (info.st_uid, info.st_gid) == (TENANT, TENANT + 1)
    assert (volume / "run.sh").stat().st_mtime_ns == 2_000_000_000
    assert (volume / "world").stat().st_uid == TENANT
    assert os.readlink(volume / "world" / "hosts") == "/etc/hosts"
