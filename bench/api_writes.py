"""Writes through the REST API: 40 clients creating and deleting resources.

`value`: requests/s of 40 concurrent clients (one account each), each looping
create → delete of an API key, a webhook and a deployment with zero replicas, for
SECONDS, against a control plane (`encedeus controlplane`, one process) on embedded
SQLite and then on PostgreSQL. `reference`: the same inserts and deletes done
directly with the bare driver (aiosqlite / asyncpg) by 40 concurrent tasks in the
same run: each copies the very rows the control plane wrote (read back at raw driver
level) with fresh ids and unique values, and deletes them again. `p99_ms` is the
control plane's 99th percentile request latency, `cpu_ms_per_request` the control
plane process's CPU time during the timed phase divided by the requests answered
(the figure the machine's load disturbs least). Goals per engine: ratio >= 0.5 and
p99_ms <= 100.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import asyncpg  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).parent))
from api_throughput import stop, wait_for_address

CLIENTS = 40
SECONDS = 20.0
JWT_SECRET = "bench-secret-0123456789abcdef"  # noqa: S105 (throwaway server)
# PostgreSQL control planes must be given their secrets key (base64 of 32 bytes).
SECRETS_KEY = "YmVuY2gtc2VjcmV0cy1rZXktMDEyMzQ1Njc4OWFiY2Q="
POSTGRES_URL = os.environ.get(
    "ENCEDEUS_BENCH_POSTGRES_URL",
    "postgresql+asyncpg://encedeus:encedeus@127.0.0.1:5432/encedeus_test",
)
TABLES = ("api_keys", "webhooks", "deployments")
# Per table, the columns that must differ in a copy (unique indexes), and how.
UNIQUE: dict[str, tuple[str, ...]] = {
    "api_keys": ("key_hash",),
    "webhooks": (),
    "deployments": ("app_name",),
}


def _dsn(url: str, database: str | None = None) -> str:
    base, _, name = url.replace("+asyncpg", "").rpartition("/")
    return f"{base}/{database or name}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ApiClient:
    """One account's loop of create → delete through the API, timing each request."""

    def __init__(self, http: aiohttp.ClientSession, base: str, n: int) -> None:
        self.http, self.base, self.n = http, base, n
        self.headers: dict[str, str] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self.made: dict[str, str] = {}  # table → the id of one row this client wrote

    async def sign_up(self) -> None:
        body = {"username": f"writer{self.n}", "email": f"writer{self.n}@example.com",
                "password": "bench-pass-123"}  # fmt: skip
        async with self.http.post(f"{self.base}/v1/auth/register", json=body) as answer:
            assert answer.status == 201, await answer.text()
            token = (await answer.json())["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        started = time.perf_counter()
        async with self.http.request(
            method, f"{self.base}{path}", json=body, headers=self.headers
        ) as answer:
            payload = await answer.read()
            self.latencies.append(time.perf_counter() - started)
            if answer.status >= 400:
                self.errors += 1
                raise RuntimeError(f"{method} {path}: {answer.status} {payload[:200]!r}")
        return json.loads(payload) if payload else None

    async def one_round(self, k: int) -> None:
        key = await self._call("POST", "/v1/api-keys", {"name": f"k{k}"})
        hook = await self._call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook"})
        app = {"app_name": f"w{self.n}-{k}", "image": "encedeus/busybox:latest", "replicas": 0}
        made = await self._call("POST", "/v1/deployments", app)
        self.made = {"api_keys": key["id"], "webhooks": hook["id"], "deployments": made["id"]}
        await self._call("DELETE", f"/v1/api-keys/{key['id']}")
        await self._call("DELETE", f"/v1/webhooks/{hook['id']}")
        await self._call("DELETE", f"/v1/deployments/{made['id']}")

    async def run(self, until: float) -> None:
        k = 0
        while time.perf_counter() < until:
            await self.one_round(k)
            k += 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive_api(
    base: str, seconds: float, pid: int
) -> tuple[float, list[float], dict[str, str], float]:
    """(requests/s, latencies, one row id per table, server CPU s per request) of
    CLIENTS clients for `seconds`; `pid` is the server's process."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        clients = [ApiClient(http, base, n) for n in range(CLIENTS)]
        for client in clients:  # one by one: sign-up is rate limited per address
            await client.sign_up()
        await asyncio.gather(*(c.one_round(-1) for c in clients))  # warm-up
        for c in clients:
            c.latencies.clear()
        started, cpu_started = time.perf_counter(), cpu_seconds(pid)
        await asyncio.gather(*(c.run(started + seconds) for c in clients))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu_started
    latencies = [t for c in clients for t in c.latencies]
    # The rows of the last round are gone; a warm-up row shape is what counts.
    return len(latencies) / elapsed, latencies, clients[0].made, cpu / len(latencies)


class RowCopier:
    """Inserts copies of model rows and deletes them, with the bare driver."""

    def __init__(self, rows: dict[str, dict[str, Any]], placeholder: Callable[[int], str],
                 fresh_id: Callable[[], Any]) -> None:  # fmt: skip
        self.rows, self.fresh_id = rows, fresh_id
        self.inserts = {
            table: "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 (our own names)
                table, ", ".join(row), ", ".join(placeholder(i + 1) for i in range(len(row)))
            )
            for table, row in rows.items()
        }
        self.deletes = {t: f"DELETE FROM {t} WHERE id = {placeholder(1)}" for t in rows}  # noqa: S608

    def copy(self, table: str, n: int, k: int) -> tuple[Any, list[Any]]:
        row = dict(self.rows[table])
        row["id"] = self.fresh_id()
        for column in UNIQUE[table]:
            row[column] = f"r{n}-{k}-{uuid.uuid4().hex[:20]}"[: len(str(row[column])) or 20]
        return row["id"], list(row.values())


async def drive_reference(
    execute: Callable[[str, list[Any]], Awaitable[None]], copier: RowCopier, seconds: float
) -> float:
    """Statements/s of CLIENTS tasks inserting and deleting copies for `seconds`."""
    count = 0

    async def client(n: int, until: float) -> None:
        nonlocal count
        k = 0
        while time.perf_counter() < until:
            made = []
            for table in TABLES:
                row_id, values = copier.copy(table, n, k)
                await execute(copier.inserts[table], values)
                made.append((table, row_id))
            for table, row_id in made:
                await execute(copier.deletes[table], [row_id])
            count += 2 * len(TABLES)
            k += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n, started + seconds) for n in range(CLIENTS)))
    return count / (time.perf_counter() - started)


async def sqlite_reference(path: Path, made: dict[str, str], seconds: float) -> float:
    """One aiosqlite connection (SQLite has one writer), WAL, as the control plane."""
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA foreign_keys=ON")
        rows = {}
        for table in TABLES:
            db.row_factory = aiosqlite.Row
            async with db.execute(
                f"SELECT * FROM {table} WHERE id = ?",  # noqa: S608 (our own table names)
                [uuid.UUID(made[table]).hex],
            ) as cursor:
                found = await cursor.fetchone()
            assert found is not None, table
            rows[table] = dict(found)
        copier = RowCopier(rows, lambda _: "?", lambda: uuid.uuid4().hex)

        async def execute(sql: str, values: list[Any]) -> None:
            await db.execute(sql, values)
            await db.commit()

        return await drive_reference(execute, copier, seconds)


async def postgres_reference(dsn: str, made: dict[str, str], seconds: float) -> float:
    """A pool of asyncpg connections, one autocommit statement at a time."""
    async with asyncpg.create_pool(dsn, min_size=10, max_size=10) as pool:
        rows = {}
        for table in TABLES:
            found = await pool.fetchrow(
                f"SELECT * FROM {table} WHERE id = $1",  # noqa: S608 (our own table names)
                uuid.UUID(made[table]),
            )
            assert found is not None, table
            rows[table] = dict(found)
        copier = RowCopier(rows, lambda i: f"${i}", uuid.uuid4)

        async def execute(sql: str, values: list[Any]) -> None:
            await pool.execute(sql, *values)

        return await drive_reference(execute, copier, seconds)


async def keep_rows(base: str) -> dict[str, str]:
    """Rows of each table that stay (the references copy them)."""
    async with aiohttp.ClientSession() as http:
        keeper = ApiClient(http, base, 999)
        await keeper.sign_up()
        key = await keeper._call("POST", "/v1/api-keys", {"name": "kept"})
        hook = await keeper._call("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook"})
        app = {"app_name": "kept-app", "image": "encedeus/busybox:latest", "replicas": 0}
        made = await keeper._call("POST", "/v1/deployments", app)
    return {"api_keys": key["id"], "webhooks": hook["id"], "deployments": made["id"]}


def config_text(data_dir: Path, database_url: str) -> str:
    lines = [
        f'  data_dir = "{data_dir}"', '  listen_address = "127.0.0.1"', "  port = 0",
        "  auth_rate_limit = 100000", "  webhook_allow_private = true",
    ]  # fmt: skip
    if database_url:
        lines.append(f'  database_url = "{database_url}"')
    return "controlplane {\n" + "\n".join(lines) + "\n}\n"


def start_logged(config: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], str]:
    """The control plane, its output in `log` (shown when the run fails)."""
    command = [sys.executable, "-m", "controlplane.cli", "controlplane", "--config", str(config)]
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, text=True,
                                   env=env)  # fmt: skip
    with log.open() as reader:
        base = wait_for_address_in(reader, process)
    return process, base


def wait_for_address_in(reader: Any, process: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        where = reader.tell()
        line = reader.readline()
        if not line.endswith("\n"):
            reader.seek(where)
            time.sleep(0.05)
            continue
        if "control_plane_listening" in line:
            return wait_for_address(io.StringIO(line), "control_plane_listening")
    raise RuntimeError("the control plane did not start")


async def one_engine(engine: str, seconds: float) -> dict[str, Any]:
    env = {**os.environ, "JWT_SECRET": JWT_SECRET, "ENCEDEUS_SECRETS_KEY": SECRETS_KEY}
    with tempfile.TemporaryDirectory() as tmp:
        database_url, dsn = "", ""
        if engine == "postgresql":
            name = f"bench_writes_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(_dsn(POSTGRES_URL))
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            database_url = POSTGRES_URL.rpartition("/")[0] + f"/{name}"
            dsn = _dsn(POSTGRES_URL, name)
        config = Path(tmp) / "config.hcl"
        config.write_text(config_text(Path(tmp) / "data", database_url))
        log = Path(tmp) / "controlplane.log"
        process, base = start_logged(config, env, log)
        try:
            made = await keep_rows(base)
            rate, latencies, _, cpu = await drive_api(base, seconds, process.pid)
        except Exception:
            print(log.read_text()[-6000:], file=sys.stderr)
            Path("/tmp/api_writes_failed.log").write_text(log.read_text())
            raise
        finally:
            stop(process)
        if engine == "postgresql":
            reference = await postgres_reference(dsn, made, seconds)
            admin = await asyncpg.connect(_dsn(POSTGRES_URL))
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
        else:
            db_file = next((Path(tmp) / "data").glob("*.db"))
            reference = await sqlite_reference(db_file, made, seconds)
    p99 = percentile(latencies, 0.99)
    print(f"{engine}: API {rate:.0f} req/s p99 {p99 * 1000:.1f} ms; bare driver "
          f"{reference:.0f} statements/s", flush=True)  # fmt: skip
    return {
        "bench": f"api_writes_{engine}",
        "value": round(rate, 1),
        "reference": round(reference, 1),
        "ratio": round(rate / reference, 3),
        "unit": "writes/s",
        "p99_ms": round(p99 * 1000, 2),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "cpu_ms_per_request": round(cpu * 1000, 2),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    options = parser.parse_args()
    engines = ["sqlite", "postgresql"] if options.engine == "both" else [options.engine]
    for engine in engines:
        print(json.dumps(await one_engine(engine, options.seconds)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
