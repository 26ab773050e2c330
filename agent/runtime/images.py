"""Pulling images from registries: one pull per image at a time, progress as it
goes, and failures sorted into what a user can act on.

The engine's pull endpoint streams JSON messages (one per layer event); they are
folded into :class:`PullProgress`. Several servers wanting the same image (with the
same credentials) share one pull. A pull whose byte count has not grown for
`stall_seconds` is abandoned (closing the request cancels it in the engine), so a
registry that went away mid-pull does not hold a server for the engine's own minute of
retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.auth
import docker.errors
import requests
import urllib3.exceptions

from agent.runtime.types import ContainerRuntimeError, ImageInfo
from common.image_reference import ImageReference
from common.logging import get_logger

log = get_logger(__name__)
PROGRESS_INTERVAL = 0.5  # seconds between two progress reports of one pull
_DONE_STATUSES = ("Pull complete", "Already exists")


class PullFailed(ContainerRuntimeError):
    """The pull did not succeed; `code` is the stable name clients see."""

    code = "pull_failed"


class ImageUnknown(PullFailed):
    """The registry has no such repository, tag or digest."""

    code = "image_not_found"


class RegistryDenied(PullFailed):
    """The registry refused the credentials (or asked for some)."""

    code = "registry_denied"


class RegistryUnreachable(PullFailed):
    """The registry could not be reached, or stopped answering mid-pull."""

    code = "registry_unreachable"


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """Credentials for one pull; never logged (the repr hides the password)."""

    username: str
    password: str = field(repr=False)
    server_address: str = ""


@dataclass(frozen=True, slots=True)
class PullProgress:
    """Sums over the image's layers so far."""

    image: str
    bytes_done: int = 0
    bytes_total: int = 0
    layers_done: int = 0
    layers_total: int = 0


_DENIED = ("unauthorized", "denied", "authentication required", "no basic auth", "forbidden")
_UNKNOWN = ("manifest unknown", "not found", "name unknown", "does not exist")
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "eof",
    "connection reset",
    "timeout",
    "server misbehaving",
)


def classify_pull_error(image: str, message: str) -> PullFailed:
    """The typed failure for the engine's error text about pulling `image`."""
    lowered = message.lower()
    # Docker answers an unknown repository in a registry with auth as a denial too.
    if any(word in lowered for word in _DENIED):
        return RegistryDenied(f"the registry refused to serve {image!r}: {message}")
    if any(word in lowered for word in _UNKNOWN):
        return ImageUnknown(f"image {image!r} was not found in its registry: {message}")
    if any(word in lowered for word in _UNREACHABLE):
        return RegistryUnreachable(f"the registry of {image!r} could not be reached: {message}")
    return PullFailed(f"pulling {image!r} failed: {message}")


class _LayerTally:
    """Folds the engine's per-layer messages into one PullProgress."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.totals: dict[str, int] = {}
        self.current: dict[str, int] = {}
        self.done: set[str] = set()
        self.digest = ""

    def add(self, message: dict[str, Any]) -> None:
        status = str(message.get("status", ""))
        layer = str(message.get("id", ""))
        if status.startswith("Digest: "):
            self.digest = status.removeprefix("Digest: ").strip()
            return
        if not layer or status.startswith("Pulling from"):
            return
        detail = message.get("progressDetail") or {}
        self.totals.setdefault(layer, 0)
        if status == "Downloading":
            self.totals[layer] = int(detail.get("total") or self.totals[layer])
            self.current[layer] = int(detail.get("current") or 0)
        elif status in ("Download complete", *_DONE_STATUSES):
            self.current[layer] = self.totals[layer]
        if status in _DONE_STATUSES:
            self.done.add(layer)

    def progress(self) -> PullProgress:
        return PullProgress(
            image=self.image,
            bytes_done=sum(self.current.values()),
            bytes_total=sum(self.totals.values()),
            layers_done=len(self.done),
            layers_total=len(self.totals),
        )


@dataclass(eq=False)
class _Pull:
    future: asyncio.Future[str]
    listeners: list[Callable[[PullProgress], None]] = field(default_factory=list)


class ImagePuller:
    """Pulls on one engine. Safe to use from the event loop; blocking engine calls
    run in `executor`. :meth:`close` abandons pulls still running."""

    def __init__(
        self, api: docker.APIClient, executor: Executor, *, stall_seconds: float = 60.0
    ) -> None:
        self._api = api
        self._executor = executor
        self.stall_seconds = stall_seconds
        self._pulls: dict[tuple[str, str], _Pull] = {}
        self._responses: set[requests.Response] = set()
        self._lock = threading.Lock()
        self.pulls_started = 0  # how many pulls reached the engine (shared ones once)

    async def local_digest(self, reference: ImageReference, image: str) -> str | None:
        """None when `image` is not on this node; else its repo@sha256 digest in the
        reference's repository ("" for images that never came from a registry)."""
        try:
            attrs = await self._run(self._api.inspect_image, image)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise ContainerRuntimeError(str(exc)) from exc
        if reference.pinned:
            return image
        for repo_digest in attrs.get("RepoDigests") or []:
            name, _, digest = str(repo_digest).partition("@")
            if name in (reference.familiar_name, reference.name):
                return reference.with_digest(digest)
        return ""

    async def pull(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        on_progress: Callable[[PullProgress], None],
    ) -> str:
        """Pull `image`; its repo@sha256 digest. Joins a pull of the same image with the
        same credentials already running. Raises a PullFailed subclass."""
        key = (image, _fingerprint(credentials))
        pull = self._pulls.get(key)
        if pull is None:
            pull = _Pull(asyncio.get_running_loop().create_future())
            self._pulls[key] = pull
            self.pulls_started += 1
            task = asyncio.create_task(self._pull(reference, image, credentials, pull))
            task.add_done_callback(lambda _: self._pulls.pop(key, None))
        pull.listeners.append(on_progress)
        try:
            return await asyncio.shield(pull.future)
        finally:
            pull.listeners.remove(on_progress)

    async def _pull(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        pull: _Pull,
    ) -> None:
        loop = asyncio.get_running_loop()

        def report(progress: PullProgress) -> None:
            loop.call_soon_threadsafe(_notify, pull, progress)

        began = time.monotonic()
        try:
            digest = await self._run(self._pull_blocking, reference, image, credentials, report)
        except PullFailed as exc:
            log.info("image_pull_failed", image=image, code=exc.code, error=str(exc))
            pull.future.set_exception(exc)
        except Exception as exc:  # the engine failed in a way no pull error names
            log.warning("image_pull_failed", image=image, error=str(exc))
            pull.future.set_exception(PullFailed(f"pulling {image!r} failed: {exc}"))
        else:
            log.info("image_pulled", image=image, seconds=round(time.monotonic() - began, 2))
            pull.future.set_result(digest)
        if pull.future.exception() is not None:
            # Retrieved here: when every joiner was cancelled nobody else reads it.
            pass

    def _pull_blocking(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        report: Callable[[PullProgress], None],
    ) -> str:
        tally = _LayerTally(image)
        last_report = last_growth = time.monotonic()
        grown = (0, 0)
        for message in self._messages(reference, image, credentials):
            if "error" in message or "errorDetail" in message:
                detail = message.get("errorDetail") or {}
                raise classify_pull_error(image, str(detail.get("message") or message["error"]))
            tally.add(message)
            now, progress = time.monotonic(), tally.progress()
            if (progress.bytes_done, progress.layers_done) != grown:
                grown, last_growth = (progress.bytes_done, progress.layers_done), now
            elif now - last_growth > self.stall_seconds:
                raise RegistryUnreachable(
                    f"the registry of {image!r} stopped sending data for "
                    f"{self.stall_seconds:g}s ({message.get('status', '')})"
                )
            if now - last_report >= PROGRESS_INTERVAL:
                last_report = now
                report(progress)
        report(tally.progress())
        if reference.pinned:
            return image
        return reference.with_digest(tally.digest) if tally.digest else ""

    def _messages(
        self, reference: ImageReference, image: str, credentials: RegistryCredentials | None
    ) -> Iterator[dict[str, Any]]:
        api: Any = self._api  # the streaming endpoint's response is needed to abandon it
        name, tag = image, reference.tag
        if reference.pinned:
            name, tag = image.partition("@")[0], reference.digest
        elif image.endswith(f":{tag}"):
            name = image[: -len(tag) - 1]
        headers = {}
        if credentials is not None:
            auth = {
                "username": credentials.username,
                "password": credentials.password,
                "serveraddress": credentials.server_address or reference.registry,
            }
            headers["X-Registry-Auth"] = docker.auth.encode_header(auth)
        try:
            response = api._post(
                api._url("/images/create"),
                params={"fromImage": name, "tag": tag},
                headers=headers,
                stream=True,
                timeout=self.stall_seconds,
            )
            with self._tracked(response):
                if response.status_code >= 400:
                    raise classify_pull_error(image, engine_error_text(response))
                yield from api._stream_helper(response, decode=True)
        # Reading the streamed body raises urllib3's own errors (a read timeout while
        # the engine waits on a registry that stopped sending), not requests' wrappers.
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise RegistryUnreachable(
                f"the registry of {image!r} stopped answering: {type(exc).__name__}"
            ) from exc

    def _tracked(self, response: requests.Response) -> _Tracked:
        return _Tracked(self, response)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        """Abandon every pull still reading from the engine."""
        with self._lock:
            for response in list(self._responses):
                response.close()


class _Tracked:
    """Keeps a streaming response closable by :meth:`ImagePuller.close`."""

    def __init__(self, puller: ImagePuller, response: requests.Response) -> None:
        self._puller, self._response = puller, response

    def __enter__(self) -> None:
        with self._puller._lock:
            self._puller._responses.add(self._response)

    def __exit__(self, *_: object) -> None:
        with self._puller._lock:
            self._puller._responses.discard(self._response)
        self._response.close()


def _notify(pull: _Pull, progress: PullProgress) -> None:
    for listener in list(pull.listeners):
        listener(progress)


def _fingerprint(credentials: RegistryCredentials | None) -> str:
    if credentials is None:
        return ""
    material = f"{credentials.username}\0{credentials.password}\0{credentials.server_address}"
    return hashlib.sha256(material.encode()).hexdigest()


def engine_error_text(response: requests.Response) -> str:
    """The engine's error message in a failed response."""
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return response.text or f"HTTP {response.status_code}"


def docker_images(api: docker.APIClient) -> list[ImageInfo]:
    """Every image on the engine and the names containers use it as (blocking)."""
    used: dict[str, list[str]] = {}
    for container in api.containers(all=True):
        used.setdefault(str(container.get("ImageID", "")), []).append(str(container["Image"]))
    return [
        ImageInfo(
            id=str(image["Id"]),
            tags=tuple(t for t in image.get("RepoTags") or () if t != "<none>:<none>"),
            repo_digests=tuple(image.get("RepoDigests") or ()),
            created_at_ms=int(image.get("Created") or 0) * 1000,
            size_bytes=int(image.get("Size") or 0),
            used_as=tuple(used.get(str(image["Id"]), ())),
        )
        for image in api.images(all=False)
    ]
