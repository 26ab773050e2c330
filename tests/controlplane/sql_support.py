"""What SQL a test's control plane runs: statements seen by the database engine."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import event

from controlplane.state import DATABASE


@contextmanager
def statements_run(
    client: TestClient[Any, Any], keep: Callable[[str], bool] = lambda _sql: True
) -> Iterator[list[str]]:
    """The SQL statements (those `keep` accepts) the app runs while the block runs."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, _params: Any, _ctx: Any, _many: bool) -> None:
        if keep(sql):
            statements.append(sql)

    engine = client.app[DATABASE].engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def reads_of(client: TestClient[Any, Any], table: str) -> AbstractContextManager[list[str]]:
    """The SELECTs from (or joining) `table` the app runs while the block runs."""
    wanted = re.compile(rf"\b(FROM|JOIN) {table.upper()}\b")

    def select_of_table(sql: str) -> bool:
        normalised = " ".join(sql.split()).upper()
        return normalised.startswith("SELECT") and wanted.search(normalised) is not None

    return statements_run(client, select_of_table)
