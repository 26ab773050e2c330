"""open_beneath, with the kernel's openat2 and with the userspace walk: same answers."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.files import confine as beneath


@pytest.fixture(params=["openat2", "walk"])
def resolver(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = beneath.openat2_available()
    if request.param == "openat2" and not saved:
        pytest.skip("kernel without openat2")
    beneath.use_openat2(request.param == "openat2")
    yield str(request.param)
    beneath.use_openat2(saved)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    top = tmp_path / "srv"
    (top / "dir" / "deep").mkdir(parents=True)
    (top / "dir" / "deep" / "f").write_text("deep")
    (top / "file").write_text("top")
    (tmp_path / "outside").write_text("outside")
    links = {
        "abs": "/etc/passwd",
        "climb": "../outside",
        "dir/climb2": "../../outside",
        "dir/ok": "deep/f",
        "dir/up": "..",
        "chain": "chain2",
        "chain2": "dir/up/dir/ok",
        "loop1": "loop2",
        "loop2": "loop1",
        "dangling": "newfile",
    }
    for name, target in links.items():
        os.symlink(target, top / name)
    fd = os.open(top, os.O_PATH | os.O_DIRECTORY)
    yield top, fd
    os.close(fd)


def _read(fd: int, path: bytes) -> bytes:
    opened = beneath.open_beneath(fd, path, os.O_RDONLY)
    try:
        return os.read(opened, 100)
    finally:
        os.close(opened)


@pytest.mark.usefixtures("resolver")
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"file", b"top"),
        (b"dir/deep/f", b"deep"),
        (b"dir/ok", b"deep"),
        (b"dir/up/file", b"top"),
        (b"chain", b"deep"),
        (b"dir/../file", b"top"),
        (b"./dir/./deep/../deep/f", b"deep"),
    ],
)
def test_paths_inside_resolve(root: tuple[Path, int], path: bytes, expected: bytes) -> None:
    assert _read(root[1], path) == expected


@pytest.mark.usefixtures("resolver")
@pytest.mark.parametrize(
    ("path", "code"),
    [
        (b"..", errno.EXDEV),
        (b"../outside", errno.EXDEV),
        (b"dir/../../outside", errno.EXDEV),
        (b"abs", errno.EXDEV),
        (b"climb", errno.EXDEV),
        (b"dir/climb2", errno.EXDEV),
        (b"dir/up/..", errno.EXDEV),
        (b"loop1", errno.ELOOP),
    ],
)
def test_escapes_are_refused(root: tuple[Path, int], path: bytes, code: int) -> None:
    with pytest.raises(OSError, match=rf"\[Errno {code}\]") as caught:
        _read(root[1], path)
    assert caught.value.errno == code


@pytest.mark.usefixtures("resolver")
def test_create_through_an_inner_dangling_link(root: tuple[Path, int]) -> None:
    top, fd = root
    made = beneath.open_beneath(fd, b"dangling", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(made, b"x")
    os.close(made)
    assert (top / "newfile").read_text() == "x"


@pytest.mark.usefixtures("resolver")
def test_nofollow_stops_at_the_final_link(root: tuple[Path, int]) -> None:
    fd = beneath.open_beneath(root[1], b"abs", os.O_PATH | os.O_NOFOLLOW)
    os.close(fd)  # the link itself, never /etc/passwd


def test_parent_split_refuses_dot_names() -> None:
    for path in (b"", b".", b"a/..", b"/"):
        with pytest.raises(OSError, match="names no entry"):
            beneath.split_parent(path)
    assert beneath.split_parent(b"a/b/c/") == (b"a/b", b"c")
