"""Stop the control plane between two requests: nothing is lost."""

from __future__ import annotations

import pytest

from tests.controlplane.accounts_support import PASSWORD, bearer, create_api_key, register
from tests.controlplane.conftest import ConfigFactory, start_client

pytestmark = pytest.mark.usefixtures("blocking_guard")


async def test_accounts_keys_and_sessions_survive_a_restart(
    make_config: ConfigFactory, database_url: str
) -> None:
    # No jwt_secret given: the generated one must be persisted in the data dir (on
    # SQLite; PostgreSQL requires configured secrets, see test_shared_secrets.py).
    sqlite = database_url.startswith("sqlite")
    config = make_config(jwt_secret="") if sqlite else make_config()
    first = await start_client(config)
    try:
        account = await register(first)
        key = await create_api_key(first, account)
    finally:
        await first.close()

    second = await start_client(config)
    try:
        profile = await second.get("/v1/user/profile", headers=bearer(key))
        assert profile.status == 200
        assert (await profile.json())["username"] == account.username
        assert (await second.get("/v1/user/profile", headers=account.headers)).status == 200
        refreshed = await second.post(
            "/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert refreshed.status == 200
        login = await second.post(
            "/v1/auth/login", json={"username": account.username, "password": PASSWORD}
        )
        assert login.status == 200
        assert (await login.json())["user"]["is_admin"] is True
    finally:
        await second.close()
