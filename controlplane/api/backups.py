"""/v1/deployments/{id}/backups and /backup-policy: restic backups of a deployment's
slots (docs/stateful.md, docs/api.md).

Create and restore answer 202 at once and run on the slot's agent in the background
(:mod:`controlplane.backups`); their outcome is on the backup (`state`, `error`) and
in the events `backup_completed` / `backup_failed` / `restore_completed` /
`restore_failed`. A download is a signed URL on the agent (scope `backup-download`).
The owner and admins may do all of it; anyone else gets 404.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web
from pydantic import BaseModel, Field, field_validator
from sqlmodel import col, select

from common.tokens import sign_server_token
from controlplane.api.context import current_user, database, path_uuid
from controlplane.api.deployment_actions import AgentUnavailable, node_http_base
from controlplane.api.errors import ApiError, Conflict, NotFound, ValidationFailed
from controlplane.api.exec_sessions import exec_deployment
from controlplane.api.files import TRANSFER_URL_TTL, TransferUrl
from controlplane.api.pagination import PageQuery, Pagination, fetch_page
from controlplane.api.schemas import MessageResponse, Request
from controlplane.backups.cron import CronError, parse_cron
from controlplane.backups.operations import BackupProblem, reachable_from, set_locked
from controlplane.backups.runner import BackupRunner
from controlplane.db.tables import Backup, BackupPolicy, Deployment, Node
from controlplane.db.tables.backups import COMPLETED, PENDING, RUNNING
from controlplane.db.types import utcnow
from controlplane.state import BACKUPS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:-]{0,99}$"


class BackupInfo(BaseModel):
    id: uuid.UUID
    deployment_id: uuid.UUID
    ordinal: int
    name: str
    locked: bool
    state: str
    trigger: str
    size_bytes: int | None
    files: int | None
    checksum: str | None
    snapshot_id: str | None
    repository: str | None
    node_id: uuid.UUID | None
    error: str | None
    created_at: datetime
    completed_at: datetime | None


class BackupList(BaseModel):
    backups: list[BackupInfo]
    pagination: Pagination


class CreateBackup(Request):
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    locked: bool = False
    ordinal: int = Field(default=0, ge=0, le=10_000)


class ChangeBackup(Request):
    locked: bool


class RestoreBackup(Request):
    wipe: bool = False


class RestoreStarted(BaseModel):
    message: str
    backup: BackupInfo


class BackupCommandsBody(Request):
    before: list[str] = Field(default_factory=list, max_length=16)
    after: list[str] = Field(default_factory=list, max_length=16)
    settle_seconds: int = Field(default=0, ge=0, le=300)


class BackupPolicyBody(Request):
    """A deployment's backup policy. `commands` absent or null: the template's."""

    schedule: str | None = Field(default=None, max_length=100)
    keep_last: int | None = Field(default=None, ge=1, le=1000)
    keep_daily: int | None = Field(default=None, ge=1, le=1000)
    keep_weekly: int | None = Field(default=None, ge=1, le=1000)
    ignore: list[str] = Field(default_factory=list, max_length=100)
    commands: BackupCommandsBody | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            try:
                parse_cron(value)
            except CronError as exc:
                raise ValueError(str(exc)) from None
            return value.strip()
        return None

    @field_validator("ignore")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or len(pattern) > 255 or "\0" in pattern or "\n" in pattern:
                raise ValueError("each pattern: 1-255 characters, no NUL or newline")
        return value


class BackupPolicyInfo(BackupPolicyBody):
    next_run_at: datetime | None = None


def _info(row: Backup) -> BackupInfo:
    return BackupInfo.model_validate(row, from_attributes=True)


def _runner(request: web.Request) -> BackupRunner:
    runner = request.app.get(BACKUPS)
    if runner is None:
        raise AgentUnavailable("this control plane runs no backups")
    return runner


def _problem(problem: BackupProblem) -> ApiError:
    if problem.code in ("agent_unavailable", "shutting_down"):
        return AgentUnavailable(str(problem), code=problem.code)
    return Conflict(str(problem), code=problem.code)


async def _backup(request: web.Request) -> tuple[Deployment, Backup]:
    deployment = await exec_deployment(request)
    async with database(request).session() as session:
        backup = await session.get(Backup, path_uuid(request, "backup_id"))
    if backup is None or backup.deployment_id != deployment.id:
        raise NotFound("this deployment has no such backup", code="backup_not_found")
    return deployment, backup


async def create_backup(request: web.Request, body: CreateBackup) -> BackupInfo:
    """Back up one slot (default 0) now; 202, the backup `pending`."""
    deployment = await exec_deployment(request)
    if body.ordinal >= deployment.replicas:
        raise ValidationFailed(f"the deployment has no slot {body.ordinal}", code="no_such_slot")
    runner = _runner(request)
    try:
        await runner.operations.slot(deployment.id, body.ordinal)
    except BackupProblem as problem:
        raise _problem(problem) from None
    backup = Backup(
        deployment_id=deployment.id,
        user_id=deployment.user_id,
        ordinal=body.ordinal,
        name=body.name or f"backup-{utcnow():%Y%m%d-%H%M%S}",
        locked=body.locked,
    )
    async with database(request).transaction() as session:
        session.add(backup)
    try:
        runner.start_backup(backup.id)
    except BackupProblem as problem:
        raise _problem(problem) from None
    return _info(backup)


async def list_backups(request: web.Request, query: PageQuery) -> BackupList:
    """The deployment's backups, newest first."""
    deployment = await exec_deployment(request)
    statement = (
        select(Backup)
        .where(col(Backup.deployment_id) == deployment.id)
        .order_by(col(Backup.created_at).desc(), col(Backup.id))
    )
    async with database(request).session() as session:
        rows, pagination = await fetch_page(session, statement, query)
    return BackupList(backups=[_info(r) for r in rows], pagination=pagination)


async def get_backup(request: web.Request) -> BackupInfo:
    """One backup."""
    return _info((await _backup(request))[1])


async def change_backup(request: web.Request, body: ChangeBackup) -> BackupInfo:
    """Lock (kept by retention, refused by delete) or unlock a backup."""
    _, backup = await _backup(request)
    try:
        row = await set_locked(database(request), backup.id, body.locked)
    except BackupProblem as problem:
        raise _problem(problem) from None
    if row is None:
        raise NotFound("this deployment has no such backup", code="backup_not_found")
    return _info(row)


async def delete_backup(request: web.Request) -> MessageResponse:
    """Forget the snapshot in its repository (restic forget + prune) and the backup.
    409 when it is locked or still running."""
    _, backup = await _backup(request)
    if backup.locked:
        raise Conflict("the backup is locked: unlock it first", code="backup_locked")
    if backup.state in (PENDING, RUNNING):
        raise Conflict("the backup is still being taken", code="backup_in_progress")
    try:
        await _runner(request).operations.delete(backup)
    except BackupProblem as problem:
        raise _problem(problem) from None
    return MessageResponse(message="backup deleted")


async def restore_backup(request: web.Request, body: RestoreBackup) -> RestoreStarted:
    """Put the backup's files back into its slot (202): the server is stopped for it
    and started again when it was running; `wipe` empties the directory first."""
    _, backup = await _backup(request)
    if backup.state != COMPLETED:
        raise Conflict(f"the backup is {backup.state}, not completed", code="backup_not_ready")
    runner = _runner(request)
    try:
        slot = await runner.operations.slot(backup.deployment_id, backup.ordinal)
        if not reachable_from(backup.repository, slot.replica.node_id):
            raise BackupProblem(
                "backup_unreachable",
                "the backup is in the repository of another node than the one the slot runs on",
            )
        runner.start_restore(backup, wipe=body.wipe)
    except BackupProblem as problem:
        raise _problem(problem) from None
    return RestoreStarted(message="restore started", backup=_info(backup))


async def download_backup(request: web.Request) -> TransferUrl:
    """A signed URL on the agent that streams the backup as a .tar.gz (GET), at the
    URL the agent reports (https when it serves TLS), as console and file URLs are."""
    deployment, backup = await _backup(request)
    if backup.state != COMPLETED or not backup.snapshot_id:
        raise Conflict(f"the backup is {backup.state}, not completed", code="backup_not_ready")
    async with database(request).session() as session:
        node = await session.get(Node, backup.node_id) if backup.node_id else None
    http_base = node_http_base(request, node) if node is not None else ""
    if node is None or not node.secret or not http_base:
        raise AgentUnavailable("the node that holds the backup is gone")
    token = sign_server_token(
        node.secret,
        node_id=str(node.id),
        user_id=str(current_user(request).id),
        server_id=str(backup.volume_id or backup.id),
        permissions=["backup.read"],
        scope="backup-download",
        ttl_seconds=TRANSFER_URL_TTL,
        details={
            "snapshot": backup.snapshot_id,
            "repository": backup.repository,
            "filename": f"{deployment.app_name}-{backup.name}",
        },
    )
    url = (
        f"{http_base}/api/servers/{backup.volume_id or backup.id}/backups/"
        f"{backup.snapshot_id}/download?token={token}"
    )
    expires = datetime.now(UTC) + timedelta(seconds=TRANSFER_URL_TTL)
    return TransferUrl(url=url, expires_at=expires, method="GET")


def _policy_info(row: BackupPolicy | None) -> BackupPolicyInfo:
    if row is None:
        return BackupPolicyInfo()
    schedule = parse_cron(row.schedule) if row.schedule else None
    since = row.last_scheduled_at or row.updated_at
    return BackupPolicyInfo(
        schedule=row.schedule,
        keep_last=row.keep_last,
        keep_daily=row.keep_daily,
        keep_weekly=row.keep_weekly,
        ignore=list(row.ignore),
        commands=None if row.commands is None else BackupCommandsBody(**row.commands),
        next_run_at=schedule.next_after(since) if schedule else None,
    )


async def get_backup_policy(request: web.Request) -> BackupPolicyInfo:
    """The deployment's schedule, retention, ignore patterns and commands."""
    deployment = await exec_deployment(request)
    async with database(request).session() as session:
        return _policy_info(await session.get(BackupPolicy, deployment.id))


async def put_backup_policy(request: web.Request, body: BackupPolicyBody) -> BackupPolicyInfo:
    """Replace the policy; retention applies at once to every slot."""
    deployment = await exec_deployment(request)
    async with database(request).transaction() as session:
        row = await session.get(BackupPolicy, deployment.id) or BackupPolicy(
            deployment_id=deployment.id
        )
        row.schedule, row.ignore = body.schedule, list(body.ignore)
        row.keep_last, row.keep_daily, row.keep_weekly = (
            body.keep_last,
            body.keep_daily,
            body.keep_weekly,
        )
        row.commands = None if body.commands is None else body.commands.model_dump()
        row.updated_at = utcnow()
        session.add(row)
    runner = request.app.get(BACKUPS)
    if runner is not None:
        for ordinal in range(deployment.replicas):
            await runner.operations.apply_retention(deployment.id, ordinal)
    return _policy_info(row)
