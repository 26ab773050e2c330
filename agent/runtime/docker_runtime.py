"""The Docker implementation of :class:`agent.runtime.protocol.ContainerRuntime`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import docker
import docker.errors
from docker.types import LogConfig

from agent.runtime.docker_attach import DockerAttachment
from agent.runtime.docker_exec import DockerExec, open_docker_exec
from agent.runtime.docker_network import PREDEFINED_NETWORKS, ensure_network
from agent.runtime.docker_wire import (
    DROPPED_CAPABILITIES,
    DockerSubscription,
    container_info,
    id_mapping_of,
    split_frames,
    translate_error,
)
from agent.runtime.image_check import image_available_blocking
from agent.runtime.images import ImagePuller, PullProgress, RegistryCredentials, docker_images
from agent.runtime.types import (
    ContainerEvent,
    ContainerInfo,
    ContainerRuntimeError,
    ContainerSpec,
    IdMapping,
    ImageInfo,
    ImageNotFound,
    InvalidSpec,
    NotFound,
    OnOutput,
    OutputChunk,
)
from common.image_reference import ImageReference

T = TypeVar("T")


def host_config_args(spec: ContainerSpec, network: str | None = None) -> dict[str, Any]:
    """The HostConfig for `spec`: limits plus the hardening every container gets.
    `network` (an id or Docker's own mode name) is what containers with networking
    join; None leaves them on the engine's default bridge."""
    args: dict[str, Any] = {
        "binds": {host: {"bind": path, "mode": "rw"} for host, path in spec.binds.items()},
        "port_bindings": {
            f"{p.container_port}/{p.protocol}": (p.host_ip, p.host_port) for p in spec.ports
        },
        "pids_limit": spec.pids_limit,
        "security_opt": ["no-new-privileges"],
        "cap_drop": DROPPED_CAPABILITIES,
        "privileged": False,
        "log_config": LogConfig(
            type="json-file",
            config={"max-size": spec.log_max_size, "max-file": str(spec.log_max_files)},
        ),
    }
    if spec.memory_bytes:
        # Equal swap limit: no swap, so the memory limit is what the OOM killer enforces.
        args["mem_limit"] = spec.memory_bytes
        args["memswap_limit"] = spec.memory_bytes
    if spec.nano_cpus:
        args["nano_cpus"] = spec.nano_cpus
    if spec.network_disabled:
        args["network_mode"] = "none"
    elif network is not None:
        args["network_mode"] = network
    return args


class DockerRuntime:
    """Containers on the local Docker engine (see the Protocol for contracts)."""

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        threads: int = 16,
        pull_stall_seconds: float = 60.0,
    ) -> None:
        self._client = client or docker.from_env(max_pool_size=max(threads, 10))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="docker")
        self._network: str | None = None
        # Pulls hold a thread for minutes: their own pool, so they never starve the
        # short engine calls.
        self._pull_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker-pull")
        self.puller = ImagePuller(
            self._client.api, self._pull_pool, stall_seconds=pull_stall_seconds
        )

    async def _call(self, fn: Callable[..., T], *args: Any, what: str = "", **kw: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, partial(fn, *args, **kw))
        except docker.errors.APIError as exc:
            raise translate_error(exc, what) from exc
        except docker.errors.DockerException as exc:
            raise ContainerRuntimeError(str(exc)) from exc

    async def version(self) -> str:
        info = await self._call(self._client.api.version)
        return str(info.get("Version", "unknown"))

    async def id_mapping(self) -> IdMapping:
        return id_mapping_of(await self._call(self._client.api.info))

    async def image_exists(self, image: str) -> bool:
        try:
            await self._call(self._client.api.inspect_image, image)
        except (NotFound, ImageNotFound):
            return False
        return True

    async def local_image_digest(self, reference: ImageReference, image: str) -> str | None:
        return await self.puller.local_digest(reference, image)

    async def pull_image(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        on_progress: Callable[[PullProgress], None],
    ) -> str:
        return await self.puller.pull(reference, image, credentials, on_progress)

    async def check_image(
        self,
        reference: ImageReference,
        image: str,
        credentials: RegistryCredentials | None,
        registry_seconds: float,
        *,
        use_local: bool = True,
    ) -> bool:
        loop = asyncio.get_running_loop()
        check = partial(
            image_available_blocking,
            self._client.api,
            reference,
            image,
            credentials,
            registry_seconds,
            use_local=use_local,
        )
        return await loop.run_in_executor(self._pool, check)

    async def list_images(self) -> list[ImageInfo]:
        return await self._call(docker_images, self._client.api)

    async def remove_image(self, image_id: str) -> bool:
        try:
            await self._call(self._client.api.remove_image, image_id, what=image_id)
        except (NotFound, ImageNotFound):
            return True
        except ContainerRuntimeError:
            return False  # 409: a container uses it (or a child image does)
        return True

    async def use_network(self, name: str) -> str:
        if name in PREDEFINED_NETWORKS:
            self._network = name
        else:
            self._network = await self._call(ensure_network, self._client.api, name, what=name)
        return self._network

    async def create(self, spec: ContainerSpec) -> ContainerInfo:
        api = self._client.api
        try:
            host_config = api.create_host_config(**host_config_args(spec, self._network))
        except docker.errors.DockerException as exc:
            raise InvalidSpec(str(exc)) from exc
        try:
            created = await self._call(
                api.create_container,
                spec.image,
                command=spec.command or None,
                environment=spec.env,
                labels=spec.labels,
                name=spec.name,
                host_config=host_config,
                ports=[(p.container_port, p.protocol) for p in spec.ports],
                stdin_open=spec.open_stdin,
                # Not detached, docker-py sets StdinOnce: the container's stdin would
                # close with the agent's attachment, and a restarted agent would find
                # its servers dead.
                detach=True,
                tty=False,
                working_dir=spec.working_dir or None,
                user=spec.user or None,
                what=spec.name,
            )
        except (ImageNotFound, NotFound) as exc:
            # The engine answers 404 for a missing image; it never pulls on create.
            raise ImageNotFound.of(spec.image) from exc
        except ContainerRuntimeError as exc:
            if type(exc) is ContainerRuntimeError:  # the engine's 500s here are bad specs
                raise InvalidSpec(str(exc)) from exc
            raise
        # No inspect: a container just created is what its spec says (an inspect was a
        # round trip to the engine on every start, for nothing the caller needed).
        return ContainerInfo.just_created(str(created["Id"]), spec)

    async def start(self, container_id: str) -> ContainerInfo:
        api = self._client.api

        def start_and_read() -> dict[str, Any]:
            # One hop to the pool for both: on a loaded machine each hop (a thread and
            # the event loop waking up) cost more than the inspect itself.
            api.start(container_id)
            attrs: dict[str, Any] = api.inspect_container(container_id)
            return attrs

        return container_info(await self._call(start_and_read, what=container_id))

    async def signal(self, container_id: str, signal: str) -> None:
        await self._call(self._client.api.kill, container_id, signal=signal, what=container_id)

    async def remove(self, container_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self._call(
                self._client.api.remove_container, container_id, force=True, what=container_id
            )

    async def inspect(self, container_id: str) -> ContainerInfo:
        attrs = await self._call(
            self._client.api.inspect_container, container_id, what=container_id
        )
        return container_info(attrs)

    async def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        summaries = await self._call(self._client.api.containers, all=True, filters=filters)
        infos = []
        for summary in summaries:
            try:
                infos.append(await self.inspect(summary["Id"]))
            except NotFound:
                continue  # removed between the list and the inspect
        return infos

    async def exec(self, container_id: str, command: list[str]) -> int:
        api = self._client.api

        def run() -> int:
            exec_id = api.exec_create(container_id, command, stdout=False, stderr=False)
            api.exec_start(exec_id["Id"])
            return int(api.exec_inspect(exec_id["Id"]).get("ExitCode") or 0)

        return await self._call(run, what=container_id)

    async def open_exec(
        self, container_id: str, command: list[str], *, height: int, width: int, term: str
    ) -> DockerExec:
        return await open_docker_exec(
            self._call, self._client.api, container_id, command,
            height=height, width=width, term=term,
        )  # fmt: skip

    async def logs(self, container_id: str, tail: int) -> list[OutputChunk]:
        api: Any = self._client.api  # the logs endpoint's raw frames need private helpers

        def fetch() -> bytes:
            response = api._get(
                api._url("/containers/{0}/logs", container_id),
                params={"stdout": 1, "stderr": 1, "tail": str(tail)},
            )
            api._raise_for_status(response)
            return bytes(response.content)

        buffer = bytearray(await self._call(fetch, what=container_id))
        chunks: list[OutputChunk] = []
        split_frames(buffer, lambda stream, data: chunks.append(OutputChunk(stream, data)))
        return chunks

    async def attach(
        self,
        container_id: str,
        on_output: OnOutput,
        on_end: Callable[[], None],
    ) -> DockerAttachment:
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        raw = await self._call(
            self._client.api.attach_socket, container_id, params=params, what=container_id
        )
        return await DockerAttachment.open(raw, on_output, on_end)

    def subscribe(
        self, labels: Mapping[str, str], on_event: Callable[[ContainerEvent], None]
    ) -> DockerSubscription:
        return DockerSubscription(self._client, labels, on_event)

    async def close(self) -> None:
        self.puller.close()
        await asyncio.get_running_loop().run_in_executor(self._pool, self._client.close)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pull_pool.shutdown(wait=False, cancel_futures=True)
