"""Docker wire details: timestamps, multiplexed frames, inspect data, errors, and the
engine's event stream.

The event stream owns a daemon thread that blocks on its socket: it would otherwise
pin a worker of the runtime's request pool forever. (Attach sockets are read on the
event loop: agent/runtime/docker_attach.py.)
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors

from agent.runtime.types import (
    AlreadyExists,
    ContainerEvent,
    ContainerInfo,
    ContainerRuntimeError,
    IdMapping,
    ImageNotFound,
    InvalidSpec,
    NotFound,
    NotRunning,
)
from common.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)

# Every capability: servers run as an unprivileged user, for whom capabilities would
# only matter through a setuid or file-capability binary (which no-new-privileges
# already voids), and a server that asked for root gets none either (no CHOWN,
# DAC_OVERRIDE, FOWNER, SETUID...). Ports below 1024 need none: Docker sets
# net.ipv4.ip_unprivileged_port_start=0 in each container's network namespace.
DROPPED_CAPABILITIES = ["ALL"]
_REMAPPED_ROOT_DIR = re.compile(r"^(\d+)\.(\d+)$")
_STREAMS = {1: "stdout", 2: "stderr"}
_NEVER = "0001-01-01T00:00:00Z"


def parse_docker_time(value: str | None) -> int:
    """Docker's RFC 3339 timestamp (nanosecond fraction) in ms; 0 for "never"."""
    if not value or value.startswith("0001-"):
        return 0
    main, _, rest = value.rstrip("Z").partition(".")
    fraction = "".join(ch for ch in rest if ch.isdigit())[:6].ljust(6, "0")
    stamp = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000) + int(fraction) // 1000


_FRAME_HEADER = struct.Struct(">BxxxL")  # stream id, 3 bytes of padding, payload size


def split_frames(buffer: bytearray, deliver: Callable[[str, bytes], None]) -> None:
    """Hand each complete multiplexed frame (8-byte header) at the front of `buffer` to
    `deliver(stream, data)`, taking it out of the buffer first; a partial frame stays.
    (No generator and no object per frame: this runs once per console line.)"""
    while len(buffer) >= 8:
        stream_id, size = _FRAME_HEADER.unpack_from(buffer)
        end = 8 + size
        if len(buffer) < end:
            return
        data = bytes(buffer[8:end])
        del buffer[:end]
        deliver(_STREAMS.get(stream_id, "stdout"), data)


def container_info(attrs: dict[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    network = attrs.get("NetworkSettings") or {}
    host = attrs.get("HostConfig") or {}
    return ContainerInfo(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        status=str(state.get("Status", "unknown")),
        pid=int(state.get("Pid") or 0),
        created_at_ms=parse_docker_time(attrs.get("Created")),
        started_at_ms=parse_docker_time(state.get("StartedAt", _NEVER)),
        finished_at_ms=parse_docker_time(state.get("FinishedAt", _NEVER)),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        ip_address=container_address(network),
        memory_limit_bytes=int(host.get("Memory") or 0),
    )


def container_address(network_settings: dict[str, Any]) -> str:
    """The container's IPv4 address: the top-level one exists on the default bridge
    only; on any other network it is the first network's."""
    if network_settings.get("IPAddress"):
        return str(network_settings["IPAddress"])
    for endpoint in (network_settings.get("Networks") or {}).values():
        if endpoint and endpoint.get("IPAddress"):
            return str(endpoint["IPAddress"])
    return ""


def id_mapping_of(info: dict[str, Any]) -> IdMapping:
    """The id mapping that `docker info` reveals.

    A daemon with `userns-remap` lists `name=userns` in SecurityOptions and keeps its
    state in `<data-root>/<uid>.<gid>`, the host ids container root maps to; a
    remapping whose offsets cannot be read that way is reported with offsets 0.
    """
    options = [str(o) for o in info.get("SecurityOptions") or []]
    if not any("name=userns" in option.split(",") for option in options):
        return IdMapping()
    root_dir = str(info.get("DockerRootDir") or "").rstrip("/")
    found = _REMAPPED_ROOT_DIR.match(root_dir.rsplit("/", 1)[-1])
    if found is None:
        log.warning("userns_offsets_unknown", docker_root_dir=root_dir)
        return IdMapping(remapped=True)
    return IdMapping(int(found.group(1)), int(found.group(2)), remapped=True)


def translate_error(exc: docker.errors.APIError, what: str) -> ContainerRuntimeError:
    explanation = str(exc.explanation or exc)
    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageNotFound(explanation)
    status = exc.status_code or 0
    if status == 404:
        return NotFound(f"no such container: {what}")
    if status == 409 and "is not running" in explanation:
        return NotRunning(f"container {what} is not running")
    if status == 409:
        return AlreadyExists(explanation)
    if status == 400:
        return InvalidSpec(explanation)
    return ContainerRuntimeError(explanation)


class DockerSubscription:
    """Reads the engine's event stream in a thread, reconnecting when it drops.

    After every (re)connection it delivers a synthetic "resync" event, since events
    may have been missed while disconnected.
    """

    def __init__(
        self,
        client: docker.DockerClient,
        labels: Mapping[str, str],
        on_event: Callable[[ContainerEvent], None],
    ) -> None:
        self._client, self._on_event = client, on_event
        self._filters = {"type": "container", "label": [f"{k}={v}" for k, v in labels.items()]}
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream = self._client.api.events(filters=self._filters, decode=True)
                self._on_event(ContainerEvent("", "resync", {}, 0))
                for raw in self._stream:
                    if self._stop.is_set():
                        return
                    self._deliver(raw)
            except Exception as exc:  # the engine went away: retry
                log.warning("docker_events_lost", error=str(exc))
            self._stop.wait(1.0)

    def _deliver(self, raw: dict[str, Any]) -> None:
        actor = raw.get("Actor") or {}
        attributes = dict(actor.get("Attributes") or {})
        action = str(raw.get("Action") or raw.get("status") or "").split(":")[0]
        code = attributes.get("exitCode")
        self._on_event(
            ContainerEvent(
                container_id=str(actor.get("ID") or raw.get("id") or ""),
                action=action,
                labels=attributes,
                time_ns=int(raw.get("timeNano") or 0),
                exit_code=int(code) if code is not None else None,
            )
        )

    def close(self) -> None:
        self._stop.set()
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception as exc:  # already closed by the engine
                log.debug("docker_events_close", error=str(exc))
