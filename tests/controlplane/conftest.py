"""Fixtures for control plane tests: a database on SQLite *and* PostgreSQL, and a
running control plane with an HTTP client.

Any test that takes `database_url` (directly or through `make_config`, `api`) runs
twice: once on a fresh SQLite file and once on a fresh PostgreSQL database cloned
from a migrated template. Set ENCEDEUS_TEST_POSTGRES_URL to use another server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiohttp.test_utils import TestClient, TestServer
from blockbuster import blockbuster_ctx

from controlplane.app import MAX_REQUEST_LINE, build_app
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database, create_engine
from controlplane.db.migrate import upgrade_database, upgrade_database_blocking
from tests.controlplane.cluster_support import FAST
from tests.controlplane.reconciler_harness import ReconcilerHarness, reconciler_harness
from tests.controlplane.smtp_support import Inbox, smtp_server

POSTGRES_URL = os.environ.get(
    "ENCEDEUS_TEST_POSTGRES_URL",
    "postgresql+asyncpg://encedeus:encedeus@127.0.0.1:5432/encedeus_test",
)
TEST_JWT_SECRET = "test-secret-0123456789abcdef"
# On PostgreSQL both shared secrets must be configured (docs/high-availability.md).
TEST_SECRETS_KEY = "dGVzdC1zZWNyZXRzLWtleS0wMTIzNDU2Nzg5YWJjZGU="

ConfigFactory = Callable[..., ControlPlaneConfig]


def _dsn(url: str, database: str | None = None) -> str:
    base, _, name = url.replace("+asyncpg", "").rpartition("/")
    return f"{base}/{database or name}"


def _with_database(url: str, database: str) -> str:
    return url.rpartition("/")[0] + "/" + database


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _off_loop(function: Callable[[], Any]) -> Any:
    # Session fixtures may be first requested from inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function).result()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A database migrated to head once per session; tests clone it."""
    name = f"enc_tpl_{uuid.uuid4().hex[:12]}"
    _off_loop(lambda: asyncio.run(_admin(f'CREATE DATABASE "{name}"')))
    try:
        _off_loop(lambda: upgrade_database_blocking(_with_database(POSTGRES_URL, name)))
        yield name
    finally:
        _off_loop(lambda: asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))


#: For a module whose tests drive real agents on the local dockerd: they run on SQLite
#: only (``pytestmark = SQLITE_ONLY``); the API's SQL is covered on both engines by
#: the other control plane tests.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty-of-rows database at schema head, on each of the two engines."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'encedeus.db'}"
        return
    template = request.getfixturevalue("postgres_template")
    name = f"enc_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on `database_url`, at schema head."""
    await upgrade_database(database_url)
    db = Database(create_engine(database_url))
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def blocking_guard() -> Iterator[None]:
    """Fail on blocking calls (file I/O, sleep, sync sockets) made on the event loop
    by control plane code. Opt in: `pytestmark = pytest.mark.usefixtures(...)`."""
    with blockbuster_ctx(["controlplane"]) as guard:
        for function in guard.functions.values():
            # Migrations run on a private event loop in a worker thread, where
            # Alembic's file reads block nobody.
            function.can_block_in(
                "controlplane/db/migrate.py", {"upgrade_database_blocking", "_upgrade", "_current"}
            )
            # asyncpg looks for ~/.postgresql client certificates when it opens a
            # connection; pooled connections make that rare.
            function.can_block_in("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args")
        # Reading our own package files at import or migration time is not request work.
        # SQLAlchemy resolves the SQLite path once when the engine is made (getcwd only).
        guard.functions["os.path.abspath"].can_block_in(
            "sqlalchemy/dialects/sqlite/pysqlite.py", "create_connect_args"
        )
        yield


@pytest.fixture
def make_config(database_url: str, tmp_path: Path) -> ConfigFactory:
    """A config on the test database; keyword arguments override fields."""

    def make(**overrides: Any) -> ControlPlaneConfig:
        values: dict[str, Any] = {
            "listen_address": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "jwt_secret": TEST_JWT_SECRET,
            "secrets_key": TEST_SECRETS_KEY,
            "auth_rate_limit": 1000,
            # No test may reach the real forge: a closed loopback port unless it says.
            "forge_api_url": "http://127.0.0.1:9",
        }
        values.update(overrides)
        return ControlPlaneConfig(**values)

    return make


async def start_client(config: ControlPlaneConfig) -> TestClient[Any, Any]:
    """A started control plane for `config` and a client for it (close it after)."""
    server = TestServer(build_app(config), host="127.0.0.1")
    client: TestClient[Any, Any] = TestClient(server)
    try:
        # The server options of serve/up (TestServer drops its constructor's).
        await server.start_server(max_line_size=MAX_REQUEST_LINE)
        await client.start_server()
    except BaseException:
        await client.close()
        raise
    return client


@pytest.fixture
async def api(make_config: ConfigFactory) -> AsyncIterator[TestClient[Any, Any]]:
    """A running control plane (default test config) and an HTTP client for it."""
    client = await start_client(make_config())
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def fast_api(make_config: ConfigFactory) -> AsyncIterator[TestClient[Any, Any]]:
    """A running control plane with the quick orchestration timings of the cluster
    tests (FAST), and an HTTP client for it."""
    client = await start_client(make_config(**FAST))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    """A real SMTP server on the test's own event loop: (its inbox, its port)."""
    async with smtp_server() as served:
        yield served


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[ReconcilerHarness]:
    """The reconciler, the agent pool and the task runner over fake agents, on a fresh
    database (see tests/controlplane/reconciler_harness.py)."""
    async with reconciler_harness(database_url) as built:
        yield built
