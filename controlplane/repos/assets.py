"""A release asset of a watched repo as a task input file (seed 003's `repo` +
`releaseAsset`): which release, which asset, its bytes."""

from __future__ import annotations

from common.outbound import OutboundPolicy
from controlplane.db.tables.repos import Repo
from controlplane.repos.forge import (
    ForgeClient,
    ForgeError,
    ReleaseAsset,
    ReleaseNotFound,
)
from controlplane.security.secrets import SecretBox, SecretUnreadable, open_for_row
from controlplane.tasks.inputs import InputFile, safe_relative_path

TOKEN_PURPOSE = "forge_token"  # noqa: S105
ASSET_MODE = 0o755  # release assets are mostly programs the task's command runs


class ReleaseAssetNotFound(ForgeError):
    """The release has no asset of that name; `details` lists the ones it has."""

    code, status = "release_asset_not_found", 422

    def __init__(self, message: str, details: dict[str, object]) -> None:
        super().__init__(message)
        self.details = details


class RepoTokenUnreadable(ForgeError):
    """The stored token was sealed under another secrets key."""

    code, status = "repo_token_unreadable", 422


def repo_token(repo: Repo, box: SecretBox) -> str:
    """The repo's forge token in the clear ('' when it has none)."""
    if not repo.token_sealed:
        return ""
    try:
        return open_for_row(box, repo.token_sealed, TOKEN_PURPOSE, repo.id)
    except SecretUnreadable as exc:
        raise RepoTokenUnreadable(
            f"the token of {repo.owner_name}/{repo.name} cannot be read with this control "
            "plane's secrets_key; remove the repo and add it again"
        ) from exc


async def _release_assets(
    repo: Repo, tag: str | None, token: str, forge: ForgeClient
) -> tuple[str, list[ReleaseAsset]]:
    """(tag, assets) of the release `tag`, or of the latest release the watch list saw."""
    if tag:
        release = await forge.release_by_tag(repo.owner_name, repo.name, tag, token)
        return release.tag, list(release.assets)
    if not repo.latest_version:
        raise ReleaseNotFound(f"no release of {repo.owner_name}/{repo.name} has been seen yet")
    return repo.latest_version, [ReleaseAsset.from_stored(a) for a in repo.latest_release_assets]


async def release_asset_input(
    repo: Repo,
    asset_name: str,
    tag: str | None,
    *,
    box: SecretBox,
    forge: ForgeClient,
    policy: OutboundPolicy,
) -> tuple[InputFile, str]:
    """The asset `asset_name` of release `tag` (default: the latest seen) as an input
    file at the working directory's top, executable, and the release's tag. Raises
    ForgeError subclasses, the fetcher's errors, and InputError for a bad name."""
    token = repo_token(repo, box)
    used_tag, assets = await _release_assets(repo, tag, token, forge)
    asset = next((a for a in assets if a.name == asset_name), None)
    if asset is None:
        raise ReleaseAssetNotFound(
            f"release {used_tag} of {repo.owner_name}/{repo.name} has no asset {asset_name!r}",
            {"release_asset": asset_name, "tag": used_tag, "available": [a.name for a in assets]},
        )
    content = await forge.download(asset, token, policy)
    mime = asset.content_type.split(";", 1)[0].strip()
    path = safe_relative_path(asset.name)
    return InputFile(path, content, ASSET_MODE, mime, asset.browser_download_url), used_tag
