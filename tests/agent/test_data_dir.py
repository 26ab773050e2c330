"""Data directory rules without containers: the engine's id mapping, who owns what,
input files that must stay inside, and the container_user setting."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import AgentConfig
from agent.fleet import data_dir as data_dir_module
from agent.fleet.data_dir import ServerVolumes, chown_tree, prepare_data_dir
from agent.runtime import IdMapping
from agent.runtime.docker_wire import id_mapping_of
from protos import agent_pb2 as pb
from tests.fifo_support import finishes_within

REMAPPED = {
    "SecurityOptions": ["name=seccomp,profile=default", "name=userns"],
    "DockerRootDir": "/var/lib/docker/231072.231072",
}


def test_a_daemon_without_userns_remap_maps_ids_as_they_are() -> None:
    info = {"SecurityOptions": ["name=seccomp,profile=default"], "DockerRootDir": "/x/1.2"}
    assert id_mapping_of(info) == IdMapping()
    assert IdMapping().host_ids(988, 988) == (988, 988)


def test_userns_remap_offsets_come_from_the_daemons_root_dir() -> None:
    assert id_mapping_of(REMAPPED) == IdMapping(231072, 231072, remapped=True)
    unreadable = {**REMAPPED, "DockerRootDir": "/srv/docker"}
    assert id_mapping_of(unreadable) == IdMapping(remapped=True)


def test_files_belong_to_the_host_ids_of_the_container_user(tmp_path: Path) -> None:
    plain = ServerVolumes(tmp_path, container_user=(988, 988))
    remapped = ServerVolumes(
        tmp_path, container_user=(988, 988), id_mapping=id_mapping_of(REMAPPED)
    )
    root = pb.ServerSpec(id="s", run_as_root=True)
    assert (plain.owner_of(pb.ServerSpec(id="s")), plain.owner_of(root)) == ((988, 988), (0, 0))
    assert plain.owner_of(None) == (988, 988)  # SFTP before the server exists here
    assert remapped.owner_of(pb.ServerSpec(id="s")) == (232060, 232060)
    assert remapped.owner_of(root) == (231072, 231072)
    assert (plain.user_of(pb.ServerSpec()), plain.user_of(root)) == ("988:988", "0:0")


def test_restore_closes_the_directories(tmp_path: Path) -> None:
    (tmp_path / "volumes").mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    ServerVolumes(tmp_path, container_user=(988, 988)).restore()
    assert stat.S_IMODE((tmp_path / "volumes").stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    # A remapped root is an ordinary host uid: it may search, never list.
    ServerVolumes(tmp_path, container_user=(1, 1), id_mapping=IdMapping(9, 9, True)).restore()
    assert stat.S_IMODE((tmp_path / "volumes").stat().st_mode) == 0o711


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_input_files_are_owned_and_stay_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tmp_path / "data"
    files = [pb.InputFile(path="in/put.txt", content=b"x", mode=0o4755)]
    assert prepare_data_dir(data, files, (1234, 2345)) is True
    for path in (data, data / "in", data / "in" / "put.txt"):
        assert (path.lstat().st_uid, path.lstat().st_gid) == (1234, 2345), path
    assert stat.S_IMODE((data / "in" / "put.txt").stat().st_mode) == 0o755  # no setuid

    (data / "link").symlink_to(outside)
    with pytest.raises(OSError, match=r"cross-device") as refused:
        prepare_data_dir(data, [pb.InputFile(path="link/x", content=b"y")], (1, 1))
    assert refused.value.errno == errno.EXDEV
    assert list(outside.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_tree_changes_links_not_their_targets(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_text("")
    top = tmp_path / "top"
    (top / "d").mkdir(parents=True)
    (top / "d" / "to-dir").symlink_to(target)
    (top / "to-file").symlink_to(target / "f")
    chown_tree(top, (4321, 4321))
    assert (top / "d" / "to-dir").lstat().st_uid == 4321
    assert (top / "to-file").lstat().st_uid == 4321
    assert target.stat().st_uid == (target / "f").stat().st_uid == 0


@pytest.mark.parametrize("value", ["0:0", "988:0", "0:988", "nobody", "988", "-1:5", ""])
def test_container_user_must_be_an_unprivileged_uid_and_gid(value: str) -> None:
    with pytest.raises(ValidationError, match="container_user"):
        AgentConfig.model_validate({"container_user": value})


def test_container_user_defaults_to_988() -> None:
    assert AgentConfig().container_ids == (988, 988)
    assert AgentConfig(container_user="1000:100").container_ids == (1000, 100)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def _dismantle_chain(top: Path) -> None:
    """Remove a `top/d/d/…` chain a few levels at a time: pytest's own recursive
    clean-up of its old temporary directories fails on a 1,500-level tree (and warns
    of the directory iterators it leaves open), which fails a later session."""
    spare = top.parent / "spare"
    head = top / "d"
    while True:
        if (head / "d").exists():
            os.rename(head / "d", spare)
        for entry in head.iterdir():
            entry.unlink()
        head.rmdir()
        if not spare.exists():
            return
        os.rename(spare, head)


def test_chown_tree_re_owns_a_very_deep_tree(tmp_path: Path) -> None:
    """1,500 nested directories (a recursive walk hits the recursion limit, one fd per
    level hits EMFILE) are re-owned to the last file."""
    top = tmp_path / "top"
    try:
        _check_deep_tree(top)
    finally:
        _dismantle_chain(top)


def _check_deep_tree(top: Path) -> None:
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1500):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)
    (top / "side").mkdir()
    chown_tree(top, (4321, 4322))
    assert (top / "side").lstat().st_uid == 4321
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)  # down the chain (os.walk recurses)
    try:
        for _ in range(1500):
            st = os.stat("d", dir_fd=fd, follow_symlinks=False)
            assert (st.st_uid, st.st_gid) == (4321, 4322)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        assert os.stat("leaf", dir_fd=fd).st_uid == 4321
    finally:
        os.close(fd)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_tree_does_not_follow_a_directory_swapped_for_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory listed, then replaced by a symlink before the walk enters it (a
    container racing the re-own), is not followed."""
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    listed = data_dir_module._chown_entries

    def list_then_swap(fd: int, uid: int, gid: int) -> list[str]:
        names = listed(fd, uid, gid)
        if names == ["b"]:
            os.rmdir(top / "a" / "b")
            os.symlink(outside, top / "a" / "b")
        return names

    monkeypatch.setattr(data_dir_module, "_chown_entries", list_then_swap)
    chown_tree(top, (4321, 4321))
    assert (top / "a").stat().st_uid == 4321
    assert (top / "a" / "b").lstat().st_uid == 0  # the swapped-in link, made after listing
    assert outside.stat().st_uid == (outside / "secret").stat().st_uid == 0


def test_a_fifo_at_an_input_file_path_is_refused_without_blocking(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "input.txt")
    files = [pb.InputFile(path="input.txt", content=b"x")]
    owner = (os.getuid(), os.getgid())
    with pytest.raises(OSError, match="not a regular file"):
        finishes_within(2.0, lambda: prepare_data_dir(data, files, owner), data / "input.txt")
    assert stat.S_ISFIFO((data / "input.txt").lstat().st_mode)
