"""The upload writer's vectored write: every piece lands in order at its offset, also
past the kernel's iovec limit per call, and the digest sees the same bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from agent.files.transfer import _write_pieces


def test_more_pieces_than_one_call_takes_land_in_order(tmp_path: Path) -> None:
    pieces = [os.urandom(n % 97 + 1) for n in range(3000)]  # > IOV_MAX of 1024
    target = tmp_path / "out.bin"
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        _write_pieces(fd, [b"head"], 0, None)
        _write_pieces(fd, pieces, 4, digest)
    finally:
        os.close(fd)
    body = b"".join(pieces)
    assert target.read_bytes() == b"head" + body
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()
