"""Migrations that change existing rows: run from the revision before them on both
engines, with rows in place, and nothing is lost."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from alembic import command
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Uuid,
    column,
    inspect,
    select,
    table,
)
from sqlalchemy.engine import Connection
from sqlmodel import Session, SQLModel, col
from sqlmodel import select as select_rows

from controlplane.db.engine import create_engine, dispose_engine
from controlplane.db.migrate import alembic_config, upgrade_database
from controlplane.db.tables import Deployment, Task, TaskFile, TaskFileChunk, User
from controlplane.db.types import utcnow


def _back_to(conn: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, "head")  # the fixture may have migrated already
    command.downgrade(config, revision)


def _add_duplicate_app_names(conn: Connection) -> list[uuid.UUID]:
    """Three accounts each with an app `shop` (created in this order) and one with
    `shop-` plus the first 8 hex digits of the second one's id, taken already."""
    now = utcnow()
    users = [User(username=f"u{n}", email=f"u{n}@example.com", password_hash="x") for n in range(4)]
    shops = [
        Deployment(
            user_id=users[n].id, app_name="shop", image="x", created_at=now + timedelta(seconds=n)
        )
        for n in range(3)
    ]
    squatter = Deployment(user_id=users[3].id, app_name=f"shop-{shops[1].id.hex[:8]}", image="x")
    ids = [shop.id for shop in shops]
    _insert_as_of_revision(conn, [*users, *shops, squatter])
    return ids


def _insert_as_of_revision(conn: Connection, rows: list[SQLModel]) -> None:
    """Insert `rows` with only the columns their tables have at the database's current
    (older) revision: columns added by later migrations do not exist there yet. A
    table of those columns alone: the model's own would add its later columns'
    defaults to the INSERT."""
    for row in rows:
        model = type(row).__table__  # type: ignore[attr-defined]
        present = {column["name"] for column in inspect(conn).get_columns(model.name)}
        columns = [c for c in model.columns if c.name in present]
        then = Table(model.name, MetaData(), *(Column(c.name, c.type) for c in columns))
        conn.execute(then.insert().values({c.name: getattr(row, c.key) for c in columns}))


def _app_names(conn: Connection) -> dict[uuid.UUID, str]:
    rows = conn.execute(select(col(Deployment.id), col(Deployment.app_name)))
    return {row.id: row.app_name for row in rows}


async def test_global_app_names_keep_the_oldest_and_rename_later_duplicates(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_back_to, "0014_cluster")
            first, second, third = await conn.run_sync(_add_duplicate_app_names)
    finally:
        await dispose_engine(engine)
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(_app_names)
    finally:
        await dispose_engine(engine)
    assert len(names) == 4
    assert len(set(names.values())) == 4  # every row kept, every name unique
    assert names[first] == "shop"
    assert names[second] == f"shop-{second.hex[:9]}"  # the 8-digit name was taken
    assert names[third] == f"shop-{third.hex[:8]}"


def _add_template_deployments(conn: Connection) -> list[uuid.UUID]:
    """A deployment whose template record holds its ports' protocols (as they were
    kept before 0017), and one made from an image."""
    user = User(username="owner", email="owner@example.com", password_hash="x")
    record = {"id": "game", "port_protocols": [["tcp", "udp"], ["udp"], ["tcp"]]}
    game = Deployment(user_id=user.id, app_name="game", image="x", ports=[0, 0, 0],
                      template_id="game", template=record)  # fmt: skip
    web = Deployment(user_id=user.id, app_name="web", image="x", ports=[80])
    _insert_as_of_revision(conn, [user, game, web])
    return [game.id, web.id]


async def test_template_port_protocols_move_to_the_deployment(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_back_to, "0016_verified_domains_unique")
            game, web = await conn.run_sync(_add_template_deployments)
    finally:
        await dispose_engine(engine)
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(col(Deployment.id), col(Deployment.port_protocols)))
            protocols = {row.id: row.port_protocols for row in rows}
    finally:
        await dispose_engine(engine)
    assert protocols == {game: ["tcp+udp", "udp", "tcp"], web: []}


def _add_task_with_inline_files(conn: Connection) -> uuid.UUID:
    """A task (0019 schema) with two files whose bytes are in task_files.content."""
    user = User(username="tasker", email="tasker@example.com", password_hash="x")
    with Session(conn) as session:
        session.add(user)
        session.flush()
        task = Task(user_id=user.id, image="img")
        session.add(task)
        session.commit()
        task_id = task.id
    old_files = table(
        "task_files",
        *(column(name, kind) for name, kind in (
            ("id", Uuid()), ("task_id", Uuid()), ("path", String()), ("mode", Integer()),
            ("size", Integer()), ("mime_type", String()), ("source_url", String()),
            ("content", LargeBinary()),
        )),
    )  # fmt: skip
    for path, content in (("a.txt", b"alpha"), ("empty", b"")):
        conn.execute(
            old_files.insert().values(
                id=uuid.uuid4(), task_id=task_id, path=path, mode=0o644, size=len(content),
                mime_type="", source_url="", content=content,
            )
        )  # fmt: skip
    return task_id


def _task_file_bytes(conn: Connection, task_id: uuid.UUID) -> dict[str, tuple[bytes, str]]:
    with Session(conn) as session:
        files = session.exec(select_rows(TaskFile).where(col(TaskFile.task_id) == task_id)).all()
    found: dict[str, tuple[bytes, str]] = {}
    for item in files:
        chunks = conn.execute(
            select(col(TaskFileChunk.data))
            .where(col(TaskFileChunk.file_id) == item.id)
            .order_by(col(TaskFileChunk.seq))
        ).scalars()
        found[item.path] = (b"".join(bytes(c) for c in chunks), item.sha256)
    return found


async def test_task_file_contents_move_into_chunks_with_their_digest(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_back_to, "0019_volume_moves")
            task_id = await conn.run_sync(_add_task_with_inline_files)
    finally:
        await dispose_engine(engine)
    await upgrade_database(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(_task_file_bytes, task_id)
    finally:
        await dispose_engine(engine)
    assert found == {
        "a.txt": (b"alpha", hashlib.sha256(b"alpha").hexdigest()),
        "empty": (b"", hashlib.sha256(b"").hexdigest()),
    }
