"""The control plane's data directory and embedded database are private to its user
whatever the umask (they hold password hashes, node secrets and the JWT secret)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.config import ControlPlaneConfig
from tests.controlplane.accounts_support import register
from tests.controlplane.conftest import start_client


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.mark.usefixtures("open_umask")
async def test_data_dir_and_database_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "var" / "encedeus"
    client = await start_client(
        ControlPlaneConfig(listen_address="127.0.0.1", port=0, data_dir=data_dir)
    )
    try:
        await register(client)  # something written: the WAL exists
        assert mode(data_dir) == "0o700"
        assert mode(data_dir / "encedeus.db") == "0o600"
        assert mode(data_dir / "encedeus.db-wal") == "0o600"
        assert mode(data_dir / "jwt_secret") == "0o600"
    finally:
        await client.close()
