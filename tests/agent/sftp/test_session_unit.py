"""ConfinedSFTPServer pieces that need no connection."""

from __future__ import annotations

import asyncssh
import pytest

from agent.sftp.session import ConfinedSFTPServer, v3_open_flags
from agent.sftp.tree import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE


@pytest.mark.parametrize(
    ("access", "flags", "expected"),
    [
        (asyncssh.ACE4_READ_DATA, asyncssh.FXF_OPEN_EXISTING, FXF_READ),
        (asyncssh.ACE4_WRITE_DATA, asyncssh.FXF_CREATE_TRUNCATE, FXF_WRITE | FXF_CREAT | FXF_TRUNC),
        (asyncssh.ACE4_WRITE_DATA, asyncssh.FXF_CREATE_NEW, FXF_WRITE | FXF_CREAT | FXF_EXCL),
        (
            asyncssh.ACE4_APPEND_DATA,
            asyncssh.FXF_OPEN_OR_CREATE,
            FXF_WRITE | FXF_CREAT | FXF_APPEND,
        ),
        (
            asyncssh.ACE4_READ_DATA | asyncssh.ACE4_WRITE_DATA,
            asyncssh.FXF_TRUNCATE_EXISTING,
            FXF_READ | FXF_WRITE | FXF_TRUNC,
        ),
    ],
)
def test_v56_open_flags_map_to_v3(access: int, flags: int, expected: int) -> None:
    assert v3_open_flags(access, flags) == expected


def test_host_path_mapping_fails_closed() -> None:
    server = object.__new__(ConfinedSFTPServer)
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        server.map_path(b"/etc/shadow")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        server.reverse_map_path(b"/etc")
