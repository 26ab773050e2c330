"""The test registry (scripts/setup-system.sh: Debian's docker-registry on loopback with
htpasswd auth), copies of the test image pushed to it, and private registry instances
a test starts (and stops) itself.

The shared test image is never removed: a copy is the same image under another
name, and removing a name only untags it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from tests.conftest import TEST_IMAGE
from tests.docker_support import docker_engine

REGISTRY = os.environ.get("ENCEDEUS_TEST_REGISTRY", "127.0.0.1:5000")
REGISTRY_USER = os.environ.get("ENCEDEUS_TEST_REGISTRY_USER", "encedeus")
REGISTRY_PASSWORD = os.environ.get("ENCEDEUS_TEST_REGISTRY_PASSWORD", "encedeus-registry")
CREDENTIALS = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}


def push(
    client: docker.DockerClient, repository: str, tag: str, auth: dict[str, str] | None
) -> str:
    """Push `repository:tag`; the digest the registry stored it under."""
    digest = ""
    for message in client.api.push(repository, tag, auth_config=auth, stream=True, decode=True):
        if "error" in message:
            raise RuntimeError(f"push of {repository}:{tag} failed: {message['error']}")
        aux = message.get("aux") or {}
        digest = str(aux.get("Digest") or digest)
    return digest


def untag(client: docker.DockerClient, reference: str) -> None:
    """Remove the name `reference` (never the image behind another name)."""
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_image(reference)


@contextlib.contextmanager
def pushed_copy(
    source: str = TEST_IMAGE,
    *,
    registry: str = REGISTRY,
    auth: dict[str, str] | None = CREDENTIALS,
    tag: str = "v1",
) -> Iterator[str]:
    """A uniquely named copy of `source` in `registry`, absent from the local engine
    (so using it means pulling it); every local name made for it is removed after."""
    repository = f"{registry}/t-{uuid.uuid4().hex[:12]}"
    reference = f"{repository}:{tag}"
    with docker_engine() as client:
        client.api.tag(source, repository, tag)
        try:
            push(client, repository, tag, auth)
        finally:
            untag(client, reference)
    try:
        yield reference
    finally:
        remove_local_copies(repository)


def remove_local_copies(repository: str) -> None:
    """Untag every local name of `repository` (tags and digests)."""
    with docker_engine() as client:
        for image in client.api.images(name=repository):
            names = [*(image.get("RepoTags") or ()), *(image.get("RepoDigests") or ())]
            for name in names:
                if name.startswith(f"{repository}:") or name.startswith(f"{repository}@"):
                    untag(client, name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateRegistry:
    """A registry process of one test, without auth, on 127.0.0.1:`port`."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)


@contextlib.contextmanager
def private_registry() -> Iterator[PrivateRegistry]:
    """Start a registry of this test's own (stopped and deleted afterwards)."""
    directory = Path(tempfile.mkdtemp(prefix="encedeus-registry-"))
    port = free_port()
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {directory}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        [shutil.which("docker-registry") or "docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    registry = PrivateRegistry(process, port, directory)
    try:
        wait_until_serving(registry.address)
        yield registry
    finally:
        registry.stop()
        shutil.rmtree(directory, ignore_errors=True)


def wait_until_serving(address: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # 401: serving, with auth
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def build_layered_image(repository: str, layers: int, layer_bytes: int) -> str:
    """Build `repository:latest` FROM the test image with `layers` layers of random
    bytes (`docker build` needs no network with a local base); its reference."""
    with tempfile.TemporaryDirectory() as context, docker_engine() as client:
        lines = [f"FROM {TEST_IMAGE}"]
        for index in range(layers):
            Path(context, f"layer{index}.bin").write_bytes(os.urandom(layer_bytes))
            lines.append(f"COPY layer{index}.bin /layers/layer{index}.bin")
        Path(context, "Dockerfile").write_text("\n".join(lines) + "\n")
        client.images.build(path=context, tag=f"{repository}:latest", rm=True, pull=False)
    return f"{repository}:latest"


class RegistryProxy:
    """A TCP proxy in front of a registry. With `cut_after`, once that many bytes went
    to the client it stops the registry and drops every connection: a registry that
    goes away in the middle of a pull, at a point that does not depend on timing.
    With `bytes_per_second`, it serves no faster than that (a slow registry)."""

    def __init__(
        self,
        registry: PrivateRegistry,
        *,
        cut_after: int | None = None,
        bytes_per_second: float | None = None,
    ) -> None:
        self.registry, self.cut_after = registry, cut_after
        self.bytes_per_second = bytes_per_second
        self.sent = 0
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._serving: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, abort every connection, and wait until each connection's
        task has ended and its sockets are closed (a transport still open when the
        test's loop goes away fails the run with a ResourceWarning)."""
        self._closed = True
        if self._server is not None:
            self._server.close()
        self._drop_connections()
        await asyncio.sleep(0.05)  # connections accepted just before reach _serve: it drops them
        if self._serving:
            await asyncio.wait(self._serving, timeout=10)
        self._drop_connections()  # those a pipe closed with bytes its peer had not read
        await asyncio.sleep(0)  # an aborted transport's socket closes in the next step

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        self._writers.add(client_w)  # close() aborts it even while the dial below waits
        if self.cut.is_set() or self._closed:
            client_w.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.registry.port)
        except OSError:
            # The registry stopped (cut) while this connection was being accepted: an
            # unclosed client transport here failed a CI run with a ResourceWarning.
            client_w.transport.abort()
            return
        self._writers.add(up_w)
        if self._closed:  # closed while the dial waited
            up_w.transport.abort()
            client_w.transport.abort()
            return
        await asyncio.gather(
            self._pipe(client_r, up_w, count=False),
            self._pipe(up_r, client_w, count=True),
            return_exceptions=True,
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                if not count:
                    continue
                self.sent += len(data)
                if self.bytes_per_second:
                    await asyncio.sleep(len(data) / self.bytes_per_second)
                due = self.cut_after is not None and self.sent >= self.cut_after
                if due and not self.cut.is_set():
                    await self._cut()
        finally:
            writer.close()

    async def _cut(self) -> None:
        """Stop the registry and drop every connection; those that come later are
        dropped as they come. The listener stays open until close(): on Python 3.11 a
        connection that the loop accepts as the server closes is lost half made (its
        transport asserts in `Server._attach`, the accept task swallows the error) and
        fails the test as an unclosed transport, and dockerd redials at the cut."""
        self.cut.set()
        await asyncio.to_thread(self.registry.stop)
        self._drop_connections()

    def _drop_connections(self) -> None:
        """Abort every connection, both sides. Abort, not close: a transport closed
        with bytes its peer has not read stays open until the peer reads them."""
        for writer in list(self._writers):
            writer.transport.abort()
