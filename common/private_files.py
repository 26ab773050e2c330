"""Files only their owner may read: stored credentials, node secrets, generated configs."""

from __future__ import annotations

import os
from pathlib import Path


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only (0600); a missing
    parent directory is made 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    # O_CREAT's mode does not apply to a leftover temporary file of an earlier run.
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
