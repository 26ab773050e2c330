"""DATABASE_URL in the form operators and seed 004 write it, against real PostgreSQL."""

from __future__ import annotations

import pytest

from tests.controlplane.accounts_support import register
from tests.controlplane.conftest import ConfigFactory, start_client

pytestmark = pytest.mark.usefixtures("blocking_guard")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_plain_postgresql_url_runs_the_control_plane(
    make_config: ConfigFactory, database_url: str, scheme: str
) -> None:
    plain = database_url.replace("postgresql+asyncpg://", f"{scheme}://", 1)
    assert "+asyncpg" not in plain
    client = await start_client(make_config(database_url=plain))
    try:
        account = await register(client)
        profile = await client.get("/v1/user/profile", headers=account.headers)
        assert profile.status == 200
    finally:
        await client.close()
