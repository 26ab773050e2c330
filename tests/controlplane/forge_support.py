"""A forge on 127.0.0.1 that answers the releases API with the shapes GitHub documents
(https://docs.github.com/en/rest/releases): latest release, release list, release by
tag, asset download through the API (`Accept: application/octet-stream`, answered with
a redirect) and through `browser_download_url`. It records every request it gets."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.local_http import serve_app

_asset_ids = itertools.count(1)


@dataclass
class Seen:
    """One request the forge got."""

    path: str
    authorization: str
    accept: str
    if_none_match: str = ""
    status: int = 0


@dataclass
class FakeForgeState:
    """Releases per "owner/name" (newest first), each `(tag, {asset name: bytes})`;
    `private` repos need `Authorization: Bearer <token>`; `rate_limited` answers
    every API call with GitHub's rate-limit 403."""

    base_url: str = ""
    releases: dict[str, list[tuple[str, dict[str, bytes]]]] = field(default_factory=dict)
    private: dict[str, str] = field(default_factory=dict)
    rate_limited: bool = False
    #: Headers of a 403 answered to every API call instead (None: no such answer).
    refusal_headers: dict[str, str] | None = None
    seen: list[Seen] = field(default_factory=list)
    #: Answer with ETags and 304 to a matching If-None-Match, as GitHub does.
    etags: bool = True
    asset_ids: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def publish(self, repo: str, tag: str, assets: dict[str, bytes]) -> None:
        """Add a release; it becomes the latest."""
        self.releases.setdefault(repo, []).insert(0, (tag, assets))
        for name in assets:
            self.asset_ids[(repo, tag, name)] = next(_asset_ids)

    def api_calls(self) -> list[Seen]:
        """The requests made to the API (not to download URLs)."""
        return [s for s in self.seen if s.path.startswith("/repos/")]


def _not_found() -> web.Response:
    return web.json_response({"message": "Not Found"}, status=404)


class _Forge:
    def __init__(self, state: FakeForgeState) -> None:
        self.state = state

    def _release(self, repo: str, tag: str, assets: dict[str, bytes]) -> dict[str, Any]:
        base = self.state.base_url
        return {
            "tag_name": tag,
            "name": f"Release {tag}",
            "draft": False,
            "prerelease": False,
            "assets": [
                {
                    "id": self.state.asset_ids[(repo, tag, name)],
                    "name": name,
                    "size": len(content),
                    "content_type": "application/octet-stream",
                    "url": f"{base}/repos/{repo}/releases/assets/"
                    f"{self.state.asset_ids[(repo, tag, name)]}",
                    "browser_download_url": f"{base}/{repo}/releases/download/{tag}/{name}",
                }
                for name, content in assets.items()
            ],
        }

    def _gate(self, request: web.Request) -> tuple[str, web.Response | None]:
        """The repo of an API request, or the refusal to answer instead."""
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if self.state.rate_limited:
            headers = {
                "X-RateLimit-Limit": "60",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + 120),
            }
            body = {"message": "API rate limit exceeded"}
            return repo, web.json_response(body, status=403, headers=headers)
        if self.state.refusal_headers is not None:
            body = {"message": "You have exceeded a secondary rate limit"}
            return repo, web.json_response(body, status=403, headers=self.state.refusal_headers)
        token = self.state.private.get(repo)
        if repo not in self.state.releases or (
            token and request.headers.get("Authorization") != f"Bearer {token}"
        ):
            return repo, _not_found()
        return repo, None

    async def latest(self, request: web.Request) -> web.Response:
        repo, refusal = self._gate(request)
        if refusal is not None:
            return refusal
        releases = self.state.releases[repo]
        if not releases:
            return _not_found()
        return web.json_response(self._release(repo, *releases[0]))

    async def listing(self, request: web.Request) -> web.Response:
        repo, refusal = self._gate(request)
        if refusal is not None:
            return refusal
        per_page = int(request.query.get("per_page", "30"))
        releases = self.state.releases[repo][:per_page]
        return web.json_response([self._release(repo, *r) for r in releases])

    async def by_tag(self, request: web.Request) -> web.Response:
        repo, refusal = self._gate(request)
        if refusal is not None:
            return refusal
        for tag, assets in self.state.releases[repo]:
            if tag == request.match_info["tag"]:
                return web.json_response(self._release(repo, tag, assets))
        return _not_found()

    async def asset_api(self, request: web.Request) -> web.Response:
        repo, refusal = self._gate(request)
        if refusal is not None:
            return refusal
        wanted = int(request.match_info["id"])
        if request.headers.get("Accept") != "application/octet-stream":
            return web.json_response({"id": wanted})
        for (owner_repo, tag, name), asset_id in self.state.asset_ids.items():
            if owner_repo == repo and asset_id == wanted:
                # GitHub answers with a short-lived signed URL on another host.
                raise web.HTTPFound(f"{self.state.base_url}/signed/{repo}/{tag}/{name}?sig=x")
        return _not_found()

    async def download(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if repo in self.state.private and not request.path.startswith("/signed/"):
            return _not_found()
        for tag, assets in self.state.releases.get(repo, []):
            if tag == request.match_info["tag"] and request.match_info["name"] in assets:
                return web.Response(body=assets[request.match_info["name"]])
        return _not_found()


@asynccontextmanager
async def fake_forge() -> AsyncIterator[FakeForgeState]:
    """A running forge (its `base_url` is the API base and the download host)."""
    state = FakeForgeState()
    forge = _Forge(state)

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen = Seen(
            request.path,
            request.headers.get("Authorization", ""),
            request.headers.get("Accept", ""),
            request.headers.get("If-None-Match", ""),
        )
        state.seen.append(seen)
        response: web.StreamResponse = await handler(request)
        if isinstance(response, web.Response) and response.status == 200 and state.etags:
            # GitHub's conditional requests: an ETag on every answer, 304 (not
            # counted against the rate limit) when If-None-Match still matches.
            assert isinstance(response.body, bytes)
            etag = '"' + hashlib.sha256(response.body).hexdigest()[:16] + '"'
            if seen.if_none_match == etag:
                response = web.Response(status=304, headers={"ETag": etag})
            else:
                response.headers["ETag"] = etag
        seen.status = response.status
        return response

    app = web.Application(middlewares=[record])
    repo = "/repos/{owner}/{repo}"
    app.router.add_get(f"{repo}/releases/latest", forge.latest)
    app.router.add_get(f"{repo}/releases", forge.listing)
    app.router.add_get(f"{repo}/releases/tags/{{tag}}", forge.by_tag)
    app.router.add_get(f"{repo}/releases/assets/{{id}}", forge.asset_api)
    app.router.add_get("/{owner}/{repo}/releases/download/{tag}/{name}", forge.download)
    app.router.add_get("/signed/{owner}/{repo}/{tag}/{name}", forge.download)
    async with serve_app(app) as url:
        state.base_url = url
        yield state
