"""The forge's releases API, as GitHub documents it (GitHub Enterprise and
Gitea/Forgejo speak the same): latest release, release by tag, and release assets.

The API base is the operator's (`forge_api_url`), so API calls go straight to it; a
token is sent only there, never on a redirect. Asset bodies come through the guarded
outbound client (:func:`common.outbound.fetch_bytes`), like any other
URL a tenant names.

Caching: answers that carry an ETag are kept (per credential and path, a bounded LRU)
and asked again with `If-None-Match`, so an unchanged release costs a 304, which
GitHub does not count against the rate limit. Token-less answers are shared by every
account for `anonymous_ttl_seconds`: within it they are served without asking the
forge, even while the token-less rate limit is spent, so one tenant spending the
anonymous budget does not stop others whose lookups the cache answers.

Rate limits: a 403/429 that carries GitHub's rate-limit headers (`x-ratelimit-remaining:
0` with `x-ratelimit-reset`, or `retry-after`) raises :class:`ForgeRateLimited`, and
the client then refuses further calls with the same credential until the reset time
without contacting the forge: a check of many repos stops instead of storming.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from common.outbound import OutboundPolicy, fetch_bytes

API_VERSION = "2022-11-28"
DEFAULT_ANONYMOUS_TTL = 60.0
MAX_CACHED_ANSWERS = 2048
DEFAULT_RATE_LIMIT_WAIT = 60.0
MAX_RATE_LIMIT_WAIT = 3600.0
#: What a forge token may be: 1-255 printable ASCII characters, no space, no CR/LF
#: (it goes into an HTTP header and a sealed column of bounded size).
FORGE_TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
#: Path segments a URL library normalises away: never an owner or repository name.
DOT_SEGMENTS = frozenset({".", ".."})


def is_valid_forge_token(token: str) -> bool:
    """Whether `token` has the form of a forge token (see FORGE_TOKEN_PATTERN)."""
    return FORGE_TOKEN_PATTERN.fullmatch(token) is not None


class ForgeError(Exception):
    """The forge could not answer (`code` is the API error code to report)."""

    code = "forge_unavailable"
    status = 502


class ForgeUnreachable(ForgeError):
    """No answer from the forge at all (connection, timeout, unreadable body)."""


class RepoNotFound(ForgeError):
    """The forge knows no such repository (or the token may not see it)."""

    code, status = "repo_not_found", 422


class ReleaseNotFound(ForgeError):
    """The repository has no release (or none with the tag asked for)."""

    code, status = "release_not_found", 422


class ForgeDenied(ForgeError):
    """The forge refused the credential (401, or 403 without rate-limit headers)."""

    code, status = "forge_access_denied", 422


class ForgeRateLimited(ForgeError):
    """The forge's rate limit for this credential is spent until `retry_after` seconds."""

    code, status = "forge_rate_limited", 503

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ReleaseAsset:
    """A file attached to a release."""

    name: str
    size: int
    content_type: str
    browser_download_url: str
    api_url: str

    def stored(self) -> dict[str, Any]:
        """The JSON form kept in `repos.latest_release_assets`."""
        return {
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
            "browser_download_url": self.browser_download_url,
            "api_url": self.api_url,
        }

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ReleaseAsset:
        """From the forge's asset object (GitHub: `url` is the API download URL)."""
        return cls(
            name=str(data.get("name") or ""),
            size=int(data.get("size") or 0),
            content_type=str(data.get("content_type") or ""),
            browser_download_url=str(data.get("browser_download_url") or ""),
            api_url=str(data.get("url") or ""),
        )

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> ReleaseAsset:
        """From the form `stored` wrote."""
        return cls(
            name=str(data.get("name", "")),
            size=int(data.get("size", 0)),
            content_type=str(data.get("content_type", "")),
            browser_download_url=str(data.get("browser_download_url", "")),
            api_url=str(data.get("api_url", "")),
        )


@dataclass(frozen=True, slots=True)
class Release:
    """A release: its tag, display name and assets."""

    tag: str
    name: str
    assets: tuple[ReleaseAsset, ...]

    def asset(self, name: str) -> ReleaseAsset | None:
        """The asset called `name`, if the release has one."""
        return next((a for a in self.assets if a.name == name), None)

    @classmethod
    def from_api(cls, data: Any) -> Release:
        """From the forge's release object."""
        if not isinstance(data, dict) or not isinstance(data.get("tag_name"), str):
            raise ForgeError("the forge answered a release without a tag_name")
        assets = data.get("assets") or []
        return cls(
            tag=data["tag_name"],
            name=str(data.get("name") or ""),
            assets=tuple(ReleaseAsset.from_api(a) for a in assets if isinstance(a, dict)),
        )


@dataclass(slots=True)
class _Cached:
    """A 200 answer kept: its ETag (may be empty), its body, when it was last fresh."""

    etag: str
    body: Any
    fresh_at: float


def _credential_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def _rate_limit_wait(response: aiohttp.ClientResponse) -> float | None:
    """Seconds until the forge accepts calls again, when `response` is a rate-limit
    answer; None for any other answer."""
    headers = response.headers
    if response.status not in (403, 429):
        return None
    retry_after = headers.get("Retry-After", "")
    if retry_after.isdigit():
        return min(float(retry_after), MAX_RATE_LIMIT_WAIT)
    if headers.get("X-RateLimit-Remaining") == "0":
        reset = headers.get("X-RateLimit-Reset", "")
        wait = float(reset) - time.time() if reset.isdigit() else DEFAULT_RATE_LIMIT_WAIT
        return min(max(wait, 1.0), MAX_RATE_LIMIT_WAIT)
    return DEFAULT_RATE_LIMIT_WAIT if response.status == 429 else None


class ForgeClient:
    """Calls to one forge's releases API (see module doc). One per control plane: it
    remembers, per credential, until when the forge's rate limit is spent."""

    def __init__(
        self,
        api_url: str,
        timeout_seconds: float,
        *,
        anonymous_ttl_seconds: float = DEFAULT_ANONYMOUS_TTL,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._blocked_until: dict[str, float] = {}
        self._anonymous_ttl = anonymous_ttl_seconds
        self._cache: OrderedDict[tuple[str, str], _Cached] = OrderedDict()

    def _cached(self, token: str, path: str) -> _Cached | None:
        cached = self._cache.get((_credential_key(token), path))
        if cached is not None:
            self._cache.move_to_end((_credential_key(token), path))
        return cached

    def _keep(self, token: str, path: str, etag: str, body: Any) -> None:
        if not etag and token:
            return  # nothing to revalidate with, and not shared
        self._cache[(_credential_key(token), path)] = _Cached(etag, body, time.monotonic())
        while len(self._cache) > MAX_CACHED_ANSWERS:
            self._cache.popitem(last=False)

    def _check_not_blocked(self, token: str) -> None:
        until = self._blocked_until.get(_credential_key(token), 0.0)
        wait = until - time.monotonic()
        if wait > 0:
            raise ForgeRateLimited(
                f"the forge's rate limit is spent; not calling it for another {wait:.0f}s", wait
            )

    def _headers(self, token: str, accept: str = "application/vnd.github+json") -> dict[str, str]:
        headers = {"Accept": accept, "X-GitHub-Api-Version": API_VERSION, "User-Agent": "encedeus"}
        if token and not is_valid_forge_token(token):
            # Only a value stored before tokens were checked can get here.
            raise ForgeDenied("the stored forge token is malformed: add the repo again")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _get_json(self, path: str, token: str) -> tuple[int, Any]:
        """(status, JSON body or None) of GET `path` under the API base, from the cache
        when it may be (see module doc); rate-limit answers raise ForgeRateLimited,
        network failures ForgeUnreachable."""
        cached = self._cached(token, path)
        if cached and not token and time.monotonic() - cached.fresh_at < self._anonymous_ttl:
            return 200, cached.body
        self._check_not_blocked(token)
        url = f"{self._api_url}{path}"
        headers = self._headers(token)
        if cached is not None and cached.etag:
            headers["If-None-Match"] = cached.etag
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout, trust_env=False) as session,
                session.get(url, headers=headers, allow_redirects=False) as response,
            ):
                self._note_rate_limit(response, token)
                if response.status == 304 and cached is not None:
                    cached.fresh_at = time.monotonic()
                    return 200, cached.body
                if response.status != 200:
                    return response.status, None
                body = await response.json(content_type=None)
                self._keep(token, path, response.headers.get("ETag", ""), body)
                return 200, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ForgeUnreachable(f"the forge at {self._api_url} did not answer: {exc}") from exc

    def _note_rate_limit(self, response: aiohttp.ClientResponse, token: str) -> None:
        wait = _rate_limit_wait(response)
        if wait is None:
            return
        now = time.monotonic()
        # Forget spent blocks, so that the map holds only credentials blocked now.
        self._blocked_until = {k: t for k, t in self._blocked_until.items() if t > now}
        self._blocked_until[_credential_key(token)] = now + wait
        raise ForgeRateLimited(f"the forge's rate limit is spent; retry in {wait:.0f}s", wait)

    @staticmethod
    def _repo_path(owner: str, name: str) -> str:
        if owner in DOT_SEGMENTS or name in DOT_SEGMENTS:
            raise RepoNotFound(f"{owner}/{name} is not a repository name")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def _refusal(self, status: int, what: str) -> ForgeError:
        if status in (401, 403):
            return ForgeDenied(f"the forge refused access to {what} ({status})")
        return ForgeError(f"the forge answered {status} for {what}")

    async def latest_release(self, owner: str, name: str, token: str = "") -> Release | None:
        """The newest published release, None when the repository has none; RepoNotFound
        when the forge knows no such repository."""
        repo = self._repo_path(owner, name)
        status, body = await self._get_json(f"{repo}/releases/latest", token)
        if status == 200:
            return Release.from_api(body)
        if status != 404:
            raise self._refusal(status, f"{owner}/{name}")
        # GitHub answers 404 both for "no release" and "no repository": ask the list.
        status, body = await self._get_json(f"{repo}/releases?per_page=1", token)
        if status == 404:
            raise RepoNotFound(f"the forge has no repository {owner}/{name}")
        if status != 200 or not isinstance(body, list):
            raise self._refusal(status, f"{owner}/{name}")
        return Release.from_api(body[0]) if body else None

    async def release_by_tag(self, owner: str, name: str, tag: str, token: str = "") -> Release:
        """The release tagged `tag`; ReleaseNotFound when there is none."""
        path = f"{self._repo_path(owner, name)}/releases/tags/{quote(tag, safe='')}"
        status, body = await self._get_json(path, token)
        if status == 404:
            raise ReleaseNotFound(f"{owner}/{name} has no release tagged {tag!r}")
        if status != 200:
            raise self._refusal(status, f"{owner}/{name}")
        return Release.from_api(body)

    async def download(self, asset: ReleaseAsset, token: str, policy: OutboundPolicy) -> bytes:
        """The asset's bytes. Without a token: its browser_download_url through the
        guarded fetcher. With one: the API download URL (same origin as the API base
        only) answers a redirect to a signed URL, fetched through the guarded fetcher
        without the token. Raises ForgeError or the fetcher's errors."""
        if not token or not self._same_origin(asset.api_url):
            return (await fetch_bytes(asset.browser_download_url, policy)).content
        self._check_not_blocked(token)
        headers = self._headers(token, accept="application/octet-stream")
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout, trust_env=False) as session,
                session.get(asset.api_url, headers=headers, allow_redirects=False) as response,
            ):
                self._note_rate_limit(response, token)
                location = response.headers.get("Location", "")
                if response.status not in (301, 302, 303, 307, 308) or not location:
                    raise self._refusal(response.status, f"asset {asset.name}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ForgeUnreachable(f"the forge at {self._api_url} did not answer: {exc}") from exc
        return (await fetch_bytes(urljoin(asset.api_url, location), policy)).content

    def _same_origin(self, url: str) -> bool:
        mine, theirs = urlsplit(self._api_url), urlsplit(url)
        return bool(url) and (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)
