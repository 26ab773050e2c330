"""Image garbage collection: names (tags and digests) of images that servers of this
node used, removed once no server has used them for `unused_seconds`.

Only names a server of this agent asked for, and the digests pulled with them in the
same repository, are ever removed, and only in repositories the image came from (it
has a digest there): a locally built or imported image is never removed. An image
that other names still hold stays under those names (removing a name only untags).
A name a container (managed or not) was created from is never removed, nor one
matching a `protected` reference, and the engine refuses to remove the last name of
an image a container uses. When each name was last used survives restarts in
`<data_dir>/image-usage.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.runtime import ContainerRuntime
from common.image_reference import InvalidReference, parse_image_reference
from common.logging import get_logger

log = get_logger(__name__)


def canonical(name: str) -> str:
    """One spelling per reference: docker.io/library/busybox:latest for "busybox"."""
    try:
        reference = parse_image_reference(name)
    except InvalidReference:
        return name
    if reference.pinned:
        return f"{reference.name}@{reference.digest}"
    return f"{reference.name}:{reference.tag}"


def _repository(canonical_name: str) -> str:
    """registry/repository of a canonical name (which always has a tag or digest)."""
    if "@" in canonical_name:
        return canonical_name.partition("@")[0]
    return canonical_name.rpartition(":")[0]


def _pulled(tracked: set[str], names: dict[str, str]) -> set[str]:
    """The names that can be pulled again: those of repositories the image has a
    digest in. A name only ever built or imported here (no digest) is never removed:
    nothing could bring it back."""
    with_digest = {_repository(n) for n in names if "@" in n}
    return {n for n in tracked if _repository(n) in with_digest}


class ImageCollector:
    """Tracks when each server image name was last used and removes idle ones.
    `wanted` gives the image references the node's servers (and pending pulls) use
    now."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        wanted: Callable[[], Iterable[str]],
        state_file: Path,
        *,
        unused_seconds: float,
        protected: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime, self._wanted, self.state_file = runtime, wanted, state_file
        self.unused_seconds = unused_seconds
        self.protected = {canonical(p) for p in protected}
        self._clock = clock
        self.last_used: dict[str, float] | None = None  # canonical name -> seconds

    async def run(self, interval: float) -> None:
        """Collect every `interval` seconds until cancelled."""
        while True:
            try:
                await self.collect_once()
            except Exception:  # one failed pass must not end collection
                log.exception("image_gc_failed")
            await asyncio.sleep(interval)

    async def collect_once(self) -> list[str]:
        """One pass; the names removed."""
        if self.last_used is None:
            self.last_used = await asyncio.to_thread(self._load)
        now = self._clock()
        wanted = {canonical(name) for name in self._wanted()}
        images = await self.runtime.list_images()
        removed: list[str] = []
        for image in images:
            names = {canonical(n): n for n in (*image.tags, *image.repo_digests)}
            busy = {canonical(n) for n in image.used_as}
            tracked = self._track(names, wanted, busy, now)
            if not tracked or any(now - self.last_used[c] < self.unused_seconds for c in tracked):
                continue
            for name in sorted(_pulled(tracked, names) - self.protected - busy):
                if await self.runtime.remove_image(names[name]):
                    removed.append(names[name])
                    self.last_used.pop(name, None)
        present = {canonical(n) for i in images for n in (*i.tags, *i.repo_digests)}
        for name in [n for n in self.last_used if n not in present]:
            del self.last_used[name]  # removed by someone else
        await asyncio.to_thread(self._save, dict(self.last_used))
        if removed:
            log.info("images_removed", names=removed)
        return removed

    def _track(
        self, names: dict[str, str], wanted: set[str], busy: set[str], now: float
    ) -> set[str]:
        """The image's names this collector is responsible for (those servers asked
        for, and their repositories' other names), with their use recorded."""
        assert self.last_used is not None
        asked = set(names) & wanted
        repositories = {_repository(n) for n in asked | (set(names) & set(self.last_used))}
        tracked = {n for n in names if _repository(n) in repositories}
        for name in tracked:
            if name in asked or name in busy or name not in self.last_used:
                self.last_used[name] = now
        return tracked

    def _load(self) -> dict[str, float]:
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            return {str(k): float(v) for k, v in data.get("last_used", {}).items()}
        return {}

    def _save(self, last_used: dict[str, float]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last_used": last_used}), encoding="utf-8")
        tmp.replace(self.state_file)
