"""Seed 004's 422 at create: before a deployment is created, or its image or registry
credentials change, one ready node is asked (agent rpc `CheckImage`) whether the image
is on it or its registry serves the manifest with the given credentials. An image the
registry does not have is 422 `image_not_found`, credentials it refuses 422
`registry_denied`. The answer is awaited at most `CHECK_SECONDS`; when no node can tell
in time (none ready, registry unreachable, an older agent) or the deployment has no
replicas, the request is accepted and a failing pull is reported later on the
deployment, as without the check (so is one scaled up from 0 later). Verdicts are
cached per image and credentials hash for `CACHE_SECONDS`: a client retrying does not
hit the registry each time.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

from aiohttp import web
from sqlmodel import col, select

from common.logging import get_logger
from controlplane.agents.client import AgentError
from controlplane.api.context import database
from controlplane.api.errors import Unprocessable
from controlplane.db.tables import Node
from controlplane.state import AGENT_POOL, IMAGE_CHECKS
from protos import agent_pb2 as pb

log = get_logger(__name__)

CHECK_SECONDS = 3.0
CACHE_SECONDS = 30.0
CACHE_ENTRIES = 1000
REFUSALS = {
    pb.IMAGE_AVAILABILITY_NOT_FOUND: "image_not_found",
    pb.IMAGE_AVAILABILITY_DENIED: "registry_denied",
}
DEFINITE = (pb.IMAGE_AVAILABILITY_PRESENT, pb.IMAGE_AVAILABILITY_PULLABLE, *REFUSALS)


@dataclass(frozen=True, slots=True)
class ImageAccess:
    """What a node needs to fetch an image: the reference and the credentials."""

    image: str
    username: str = ""
    password: str = field(default="", repr=False)
    server_address: str = ""

    def cache_key(self) -> tuple[str, str]:
        material = f"{self.username}\0{self.password}\0{self.server_address}"
        return self.image, hashlib.sha256(material.encode()).hexdigest()

    def auth(self) -> pb.RegistryAuth | None:
        if not (self.username or self.password):
            return None
        return pb.RegistryAuth(
            username=self.username, password=self.password, server_address=self.server_address
        )


class ImageChecks:
    """The verdict cache (one per application); `seconds` bounds the wait for a
    node's answer (0: nobody is asked, every image is accepted and reported later)."""

    def __init__(self, ttl: float = CACHE_SECONDS, seconds: float = CHECK_SECONDS) -> None:
        self._ttl = ttl
        self.seconds = seconds
        self._verdicts: dict[tuple[str, str], tuple[float, pb.CheckImageResponse]] = {}

    def cached(self, access: ImageAccess) -> pb.CheckImageResponse | None:
        entry = self._verdicts.get(access.cache_key())
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def keep(self, access: ImageAccess, verdict: pb.CheckImageResponse) -> None:
        if verdict.availability not in DEFINITE:
            return  # "could not tell" is asked again next time
        if len(self._verdicts) >= CACHE_ENTRIES:
            now = time.monotonic()
            self._verdicts = {k: v for k, v in self._verdicts.items() if v[0] >= now}
            if len(self._verdicts) >= CACHE_ENTRIES:
                self._verdicts.clear()
        self._verdicts[access.cache_key()] = (time.monotonic() + self._ttl, verdict)


async def refuse_unavailable_image(request: web.Request, access: ImageAccess) -> None:
    """Raise the 422 when a ready node says `access.image` cannot be had; return
    otherwise (including when nobody could tell in time)."""
    checks = request.app.get(IMAGE_CHECKS)
    if checks is None or checks.seconds <= 0 or AGENT_POOL not in request.app:
        return
    verdict = checks.cached(access)
    if verdict is None:
        verdict = await _ask_a_ready_node(request, access, checks.seconds)
        if verdict is None:
            return
        checks.keep(access, verdict)
    code = REFUSALS.get(verdict.availability)
    if code is not None:
        raise Unprocessable(
            f"image {access.image!r} cannot be used: {verdict.message}",
            code=code,
            details={"image": access.image},
        )


async def _ask_a_ready_node(
    request: web.Request, access: ImageAccess, seconds: float
) -> pb.CheckImageResponse | None:
    pool = request.app[AGENT_POOL]
    statement = select(Node.id).where(col(Node.status) == "ready").order_by(col(Node.id))
    async with database(request).session() as session:
        node_ids = [str(node_id) for node_id in (await session.exec(statement)).all()]
    ready = [node_id for node_id in node_ids if pool.state(node_id) == "ready"]
    if not ready:
        return None
    # The agent's own registry timeout ends before ours, so it can still say so.
    agent_ms = max(int((seconds - 0.5) * 1000), 100)
    try:
        async with asyncio.timeout(seconds):
            return await pool.client(ready[0]).check_image(access.image, access.auth(), agent_ms)
    except (AgentError, TimeoutError) as exc:
        log.info("image_check_unanswered", node_id=ready[0], error=str(exc))
        return None
