"""Start and stop order of the control plane's components."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.db.engine import Database
from controlplane.state import DATABASE
from tests.controlplane.accounts_support import register
from tests.controlplane.conftest import ConfigFactory, start_client

pytestmark = pytest.mark.usefixtures("blocking_guard")

# The background workers that read or write the database.
DATABASE_USERS = {
    "webhook-delivery",
    "mail-notifications",
    "event-pruning",
    "event-log",
    "reconciler",
    "node-liveness",
    "tasks",
}


async def test_the_database_closes_after_every_worker_that_uses_it(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker still running when the pool is disposed would check connections out of
    # (or back into) a pool nobody closes again: leaked connections and lost writes.
    alive_at_close: list[set[str]] = []
    close = Database.close

    async def recording_close(self: Database) -> None:
        alive_at_close.append({t.get_name() for t in asyncio.all_tasks() if not t.done()})
        await close(self)

    monkeypatch.setattr(Database, "close", recording_close)
    client = await start_client(
        make_config(email_notifications=True, webhook_url="http://127.0.0.1:9/hook")
    )
    # On PostgreSQL only the leader sends mail (on SQLite the mail outbox's worker does).
    users = DATABASE_USERS | (
        {"mail-delivery"} if client.app[DATABASE].dialect == "postgresql" else set()
    )
    try:
        await register(client)
        # On PostgreSQL the leader's duties start once the lease is taken.
        for _ in range(100):
            running = {t.get_name() for t in asyncio.all_tasks()}
            if running >= users:
                break
            await asyncio.sleep(0.05)
        assert running >= users
    finally:
        await client.close()
    assert len(alive_at_close) == 1
    assert alive_at_close[0] & users == set()
