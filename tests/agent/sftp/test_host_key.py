"""The host key is made once, kept private, and reused."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.sftp.host_key import load_or_create_host_key


def test_made_once_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "sftp_host_ed25519"
    first = load_or_create_host_key(path)
    assert first.algorithm == b"ssh-ed25519"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_host_key(path)
    assert again.get_fingerprint() == first.get_fingerprint()
    assert sorted(p.name for p in path.parent.iterdir()) == ["sftp_host_ed25519"]
