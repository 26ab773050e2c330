"""Control planes that start at the same moment on a fresh PostgreSQL database both
start: migrations are serialised (the second finds the schema at head)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from controlplane.db.migrate import head_revision, upgrade_database
from tests.controlplane.conftest import POSTGRES_URL, _admin, _with_database


@pytest.fixture
async def empty_postgres() -> AsyncIterator[str]:
    name = f"enc_empty_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_concurrent_upgrades_of_a_fresh_database_both_succeed(empty_postgres: str) -> None:
    revisions = await asyncio.gather(*(upgrade_database(empty_postgres) for _ in range(3)))
    assert revisions == [head_revision()] * 3
