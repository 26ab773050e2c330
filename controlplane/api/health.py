"""GET /health: is the service up and its database reachable."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from controlplane import __version__
from controlplane.api.context import database
from controlplane.api.errors import ApiError


class Health(BaseModel):
    """Service status (seed 004 shape plus the database check)."""

    status: str
    service: str
    version: str
    database: str


async def health(request: web.Request) -> Health:
    """`healthy` when the database answers; 503 `database_unavailable` otherwise."""
    try:
        async with database(request).session() as session:
            await (await session.connection()).exec_driver_sql("SELECT 1")
    except (SQLAlchemyError, OSError) as exc:
        raise ApiError("database unreachable", code="database_unavailable", status=503) from exc
    return Health(status="healthy", service="encedeus", version=__version__, database="ok")
