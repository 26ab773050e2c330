"""/v1/repos: seed 003's watch list of forge repositories. Add one (its latest release
is read at once), list them with the latest release seen, check them all for newer
releases (`PATCH`), remove one. Each belongs to its owner; anyone else gets 404.

A token (optional) is stored sealed and sent only to the forge. Seed 003 sends it as
an `authorization` header beside its `access_token` header; that form is accepted too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import AliasChoices, BaseModel, Field, field_validator
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from common.outbound import OutboundFailed, OutboundRefused, OutboundTooLarge
from controlplane.api.authentication import authenticated_by_access_token_header
from controlplane.api.context import current_user, database, path_uuid, settings
from controlplane.api.errors import (
    ApiError,
    Conflict,
    NotFound,
    Unprocessable,
    ValidationFailed,
    rate_limited,
)
from controlplane.api.owned_rows import add_own, delete_own, page_of_own
from controlplane.api.pagination import PageQuery, Pagination
from controlplane.api.schemas import Request
from controlplane.api.task_requests import fetch_api_error, input_api_error
from controlplane.db.tables.repos import Repo
from controlplane.db.types import utcnow
from controlplane.repos.assets import TOKEN_PURPOSE, release_asset_input, repo_token
from controlplane.repos.forge import (
    DOT_SEGMENTS,
    ForgeError,
    ForgeRateLimited,
    ForgeUnreachable,
    Release,
    is_valid_forge_token,
)
from controlplane.security.credentials import looks_like_api_key
from controlplane.security.secrets import seal_for_row
from controlplane.state import FORGE_CLIENT, REPO_CHECK_LIMITER, SECRET_BOX
from controlplane.tasks.fetch import task_fetch_policy
from controlplane.tasks.inputs import InputError, InputFile, check_inputs

MAX_REPOS_PER_ACCOUNT = 100
#: GitHub's rules for owner and repository names (Gitea's are a subset); `.` and `..`
#: are refused besides (URL libraries normalise them away, steering the API path).
NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


def forge_api_error(exc: ForgeError) -> ApiError:
    """The API error for a forge failure: its code and status, Retry-After for a spent
    rate limit, and the details some failures carry."""
    headers: dict[str, str] = {}
    details: Any = getattr(exc, "details", None)
    if isinstance(exc, ForgeRateLimited):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        details = {"retry_after_seconds": round(exc.retry_after)}
    return ApiError(str(exc), code=exc.code, status=exc.status, details=details, headers=headers)


class AddRepo(Request):
    """A repository to watch: `owner_name`/`name` (seed 003's `ownerName` too) and an
    optional forge token for private repositories or a higher rate limit."""

    owner_name: str = Field(
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN,
        validation_alias=AliasChoices("owner_name", "ownerName", "owner"),
    )
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    # Its form (FORGE_TOKEN_PATTERN) is checked with the header's: 422 invalid_forge_token.
    token: str | None = Field(default=None, min_length=1)

    @field_validator("owner_name", "name")
    @classmethod
    def _not_a_dot_segment(cls, value: str) -> str:
        if value in DOT_SEGMENTS:
            raise ValueError("`.` and `..` are not repository names")
        return value


class RepoAsset(BaseModel):
    """An asset of the latest release seen."""

    name: str
    size: int
    content_type: str
    url: str


class RepoView(BaseModel):
    """A watched repository and the latest release seen (null before one is)."""

    id: uuid.UUID
    owner_name: str
    name: str
    has_token: bool
    latest_version: str | None
    latest_release_name: str | None
    latest_release_assets: list[RepoAsset]
    created_at: datetime
    checked_at: datetime | None


class CreatedRepo(RepoView):
    """The repository just added, with its latest release."""

    message: str = "Repo successfully added"


class RepoList(BaseModel):
    """A page of the caller's repositories, oldest first."""

    repos: list[RepoView]
    pagination: Pagination


class RepoCheck(BaseModel):
    """What checking one repository found. `updated`: a newer release than the one
    seen before; `failed`: the forge could not tell (see `error`); `skipped`: not
    asked, the forge's rate limit being spent."""

    id: uuid.UUID
    owner_name: str
    name: str
    outcome: Literal["updated", "unchanged", "failed", "skipped"]
    previous_version: str | None
    latest_version: str | None
    error: str | None = None


class RepoCheckReport(BaseModel):
    """The result of checking every repository of the caller."""

    message: str = "All repos successfully checked for update"
    updated: list[uuid.UUID]
    results: list[RepoCheck]


class DeletedRepo(BaseModel):
    """What DELETE removed."""

    message: str = "Repository successfully removed from the watch list"
    removed_repo: RepoView


def view_of(repo: Repo) -> RepoView:
    """The public view of a repo row (never its token)."""
    return RepoView(
        id=repo.id,
        owner_name=repo.owner_name,
        name=repo.name,
        has_token=bool(repo.token_sealed),
        latest_version=repo.latest_version or None,
        latest_release_name=repo.latest_release_name or None,
        latest_release_assets=[
            RepoAsset(
                name=a.get("name", ""),
                size=a.get("size", 0),
                content_type=a.get("content_type", ""),
                url=a.get("browser_download_url", ""),
            )
            for a in repo.latest_release_assets
        ],
        created_at=repo.created_at,
        checked_at=repo.checked_at,
    )


def _record_release(repo: Repo, release: Release) -> None:
    repo.latest_version = release.tag[:255]
    repo.latest_release_name = release.name[:255]
    repo.latest_release_assets = [a.stored() for a in release.assets]
    repo.checked_at = utcnow()


def _is_our_credential(token: str) -> bool:
    """Whether `token` is one of our own credentials (an API key, or a JWT: forge
    tokens have no dots), which must never be forwarded to the forge."""
    return looks_like_api_key(token) or token.startswith("enc_") or token.count(".") == 2


def _checked_token(token: str) -> str:
    """`token` if it has a forge token's form (or is empty); 422 invalid_forge_token
    otherwise, so that it never reaches the database or an HTTP header."""
    if token and not is_valid_forge_token(token):
        raise Unprocessable(
            "a forge token is 1-255 printable ASCII characters without spaces",
            code="invalid_forge_token",
        )
    return token


def _token_of(request: web.Request, body: AddRepo) -> str:
    """The forge token: the body's, or seed 003's raw `authorization` header when the
    caller authenticated with the seed's `access_token` header (never one of our own
    credentials sent there by mistake). Either is checked by `_checked_token`."""
    return _checked_token(_raw_token_of(request, body))


def _raw_token_of(request: web.Request, body: AddRepo) -> str:
    if body.token:
        if _is_our_credential(body.token):
            raise ValidationFailed(
                "token is one of this control plane's credentials, not a forge token",
                code="invalid_forge_token",
            )
        return body.token
    if not authenticated_by_access_token_header(request):
        return ""
    scheme, _, rest = request.headers.get("Authorization", "").strip().partition(" ")
    token = (rest if scheme.lower() in ("bearer", "token") else scheme).strip()
    # A client that sends its own credential in both headers has no forge token.
    return "" if _is_our_credential(token) else token


async def add_repo(request: web.Request, body: AddRepo) -> CreatedRepo:
    """Watch a repository. Its latest release is read now: 422 `repo_not_found` or
    `no_releases` when the forge has neither, 409 when already watched."""
    owner = current_user(request).id
    token = _token_of(request, body)
    try:
        release = await request.app[FORGE_CLIENT].latest_release(body.owner_name, body.name, token)
    except ForgeError as exc:
        raise forge_api_error(exc) from exc
    if release is None:
        raise ApiError(
            f"no releases found for {body.owner_name}/{body.name}", code="no_releases", status=422
        )
    repo = Repo(user_id=owner, owner_name=body.owner_name, name=body.name)
    if token:
        repo.token_sealed = seal_for_row(request.app[SECRET_BOX], token, TOKEN_PURPOSE, repo.id)
    _record_release(repo, release)
    exists = Conflict(f"{body.owner_name}/{body.name} is already watched", code="repo_exists")
    try:
        await add_own(request, repo, MAX_REPOS_PER_ACCOUNT, "repos")
    except IntegrityError as exc:
        raise exists from exc
    return CreatedRepo(**view_of(repo).model_dump())


async def list_repos(request: web.Request, query: PageQuery) -> RepoList:
    """The caller's repositories, oldest first, with the latest release seen."""
    rows, pagination = await page_of_own(request, Repo, query)
    return RepoList(repos=[view_of(row) for row in rows], pagination=pagination)


async def owned_repo(request: web.Request, repo_id: uuid.UUID) -> Repo | None:
    """The caller's repo `repo_id`, or None."""
    statement = select(Repo).where(
        col(Repo.id) == repo_id, col(Repo.user_id) == current_user(request).id
    )
    async with database(request).session() as session:
        return (await session.exec(statement)).first()


async def get_repo(request: web.Request) -> RepoView:
    """One of the caller's repositories."""
    repo = await owned_repo(request, path_uuid(request))
    if repo is None:
        raise NotFound("repository not found in the watch list", code="repo_not_found")
    return view_of(repo)


async def _check_one(
    request: web.Request, repo: Repo, forge_down: str | None
) -> tuple[RepoCheck, bool]:
    """Check one repo: (the result, whether the forge did not answer at all).
    `forge_down` (why it did not answer a moment ago) skips asking it again."""
    base = {"id": repo.id, "owner_name": repo.owner_name, "name": repo.name}
    previous = repo.latest_version or None
    unchecked = {"previous_version": previous, "latest_version": previous}
    if forge_down is not None:
        return RepoCheck(**base, **unchecked, outcome="skipped", error=forge_down), True
    try:
        token = repo_token(repo, request.app[SECRET_BOX])
        release = await request.app[FORGE_CLIENT].latest_release(repo.owner_name, repo.name, token)
    except ForgeError as exc:
        outcome: Literal["failed", "skipped"] = (
            "skipped" if isinstance(exc, ForgeRateLimited) else "failed"
        )
        result = RepoCheck(**base, **unchecked, outcome=outcome, error=str(exc))
        return result, isinstance(exc, ForgeUnreachable)
    if release is not None:
        _record_release(repo, release)
    repo.checked_at = utcnow()
    # An UPDATE, not a merge: a repo deleted meanwhile must stay deleted.
    statement = (
        update(Repo)
        .where(col(Repo.id) == repo.id)
        .values(
            latest_version=repo.latest_version,
            latest_release_name=repo.latest_release_name,
            latest_release_assets=repo.latest_release_assets,
            checked_at=repo.checked_at,
        )
    )
    async with database(request).transaction() as session:
        await session.exec(statement)
    latest = repo.latest_version or None
    outcome_seen: Literal["updated", "unchanged"] = "updated" if latest != previous else "unchanged"
    result = RepoCheck(
        **base, outcome=outcome_seen, previous_version=previous, latest_version=latest
    )
    return result, False


async def check_repos(request: web.Request) -> RepoCheckReport:
    """Ask the forge for every repository's latest release, one after another; report
    which changed. No storm of calls: once the forge says a credential's rate limit is
    spent, the repos using it are skipped without asking (the forge client remembers
    until the reset), and once the forge does not answer at all, the rest are skipped.
    The answer is still 200, as in seed 003: checking itself worked. An account
    checks at most once per `repo_check_interval_seconds` (429 `rate_limited` with
    Retry-After otherwise): one tenant cannot spend the forge's budget for all."""
    owner = current_user(request).id
    wait = request.app[REPO_CHECK_LIMITER].hit(str(owner))
    if wait is not None:
        raise rate_limited(wait)
    statement = select(Repo).where(col(Repo.user_id) == owner).order_by(col(Repo.created_at))
    async with database(request).session() as session:
        repos = list((await session.exec(statement)).all())
    results: list[RepoCheck] = []
    forge_down: str | None = None
    for repo in repos:
        result, unreachable = await _check_one(request, repo, forge_down)
        if unreachable and forge_down is None:
            forge_down = f"not asked: {result.error}"
        results.append(result)
    updated = [r.id for r in results if r.outcome == "updated"]
    return RepoCheckReport(updated=updated, results=results)


async def delete_repo(request: web.Request) -> DeletedRepo:
    """Stop watching a repository (tasks that ran its assets keep their record)."""
    repo = await owned_repo(request, path_uuid(request))
    missing = NotFound("repository not found in the watch list", code="repo_not_found")
    if repo is None:
        raise missing
    await delete_own(request, Repo, missing)
    return DeletedRepo(removed_repo=view_of(repo))


async def with_release_asset(
    request: web.Request,
    repo_id: uuid.UUID,
    asset_name: str,
    tag: str | None,
    inputs: list[InputFile],
) -> tuple[list[InputFile], str]:
    """`inputs` plus the release asset a task names (seed 003's `repo` +
    `releaseAsset`), and the tag of its release. 422 when the repo is not the
    caller's, the release or the asset does not exist (naming it); the fetch and
    size errors of any input file otherwise."""
    repo = await owned_repo(request, repo_id)
    if repo is None:
        raise Unprocessable(f"repo {repo_id} is not in your watch list", code="repo_not_found")
    config = settings(request)
    try:
        asset, tag = await release_asset_input(
            repo,
            asset_name,
            tag,
            box=request.app[SECRET_BOX],
            forge=request.app[FORGE_CLIENT],
            policy=task_fetch_policy(config),
        )
        files = [*inputs, asset]
        check_inputs(files, config.task_input_max_bytes)
    except ForgeError as exc:
        raise forge_api_error(exc) from exc
    except InputError as exc:
        raise input_api_error(exc) from exc
    except (OutboundTooLarge, OutboundRefused, OutboundFailed) as exc:
        raise fetch_api_error(exc) from exc
    return files, tag
