"""What a task is made of, as a request states it: spec, inline files, uploads, URLs.

:class:`TaskSpec` validates the JSON (or the `task` part of a multipart form).
:func:`gather_inputs` turns inline contents, uploaded parts and fetched URLs into
:class:`InputFile` values with safe relative paths, within the size limits. Uploaded
parts are streamed into the input store as they arrive (`stored`); inline contents
and fetched URLs are small (the request body's and `task_fetch_max_bytes`' caps) and
are stored when the task is created.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import posixpath
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.outbound import OutboundPolicy, fetch_bytes
from common.quantities import parse_cpu_millis, parse_memory_bytes
from controlplane.tasks.input_store import StoredFile

MAX_FILES = 32
MAX_PATH = 255
DEFAULT_CPU = "1"  # what a task gets when it names no cpu...
DEFAULT_MEMORY = "512Mi"  # ...or no memory


class InputError(ValueError):
    """A request's input files cannot be used; `status` is the HTTP status to answer."""

    def __init__(self, message: str, *, status: int = 422, details: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.details = details


class FileSpec(BaseModel):
    """One input file: fetched from `url`, or given inline (`content` text or
    `content_base64`). `path` defaults to the URL's last segment."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(default=None, max_length=MAX_PATH)
    url: str | None = Field(default=None, max_length=2000)
    content: str | None = None
    content_base64: str | None = None
    mode: int = Field(default=0o644, ge=0, le=0o777)

    @model_validator(mode="after")
    def _one_source(self) -> FileSpec:
        sources = [s for s in (self.url, self.content, self.content_base64) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of url, content, content_base64")
        if self.path is None and self.url is None:
            raise ValueError("inline files need a path")
        return self


class Resources(BaseModel):
    """Seed 004 quantities (:mod:`common.quantities`): cpu "500m" / "1", memory
    "128Mi", never below 10m and 6Mi once rounded. A task always runs with
    limits (one core and 512 MiB unless it asks): one task must not be able to take a
    node's memory from everyone else's servers, and placement reserves what it gets."""

    model_config = ConfigDict(extra="forbid")

    cpu: str | int | float | None = Field(default=None, description=f"default {DEFAULT_CPU}")
    memory: str | int | float | None = Field(default=None, description=f"default {DEFAULT_MEMORY}")

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str | int | float | None) -> str | int | float | None:
        if value is not None:
            parse_cpu_millis(value)
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | int | float | None) -> str | int | float | None:
        if value is not None:
            parse_memory_bytes(value)
        return value

    @property
    def cpu_millis(self) -> int:
        return parse_cpu_millis(DEFAULT_CPU if self.cpu is None else self.cpu)

    @property
    def memory_bytes(self) -> int:
        return parse_memory_bytes(DEFAULT_MEMORY if self.memory is None else self.memory)


#: Seed 003's names of TaskSpec fields.
SEED_ALIASES = {
    "containerImage": "image",
    "runCommand": "command",
    "releaseAsset": "release_asset",
}


class TaskSpec(BaseModel):
    """The body of POST /v1/tasks. `command` is an argv list, or a string run by
    `sh -c`; seed 003's `containerImage`/`runCommand` are accepted as aliases."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="", max_length=100)
    image: str = Field(min_length=1, max_length=500)
    command: list[str] | str = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    files: list[FileSpec] = Field(default_factory=list, max_length=MAX_FILES)
    network: bool = True
    # Seed 003: a release asset of a watched repo (`repo` = its /v1/repos id), placed
    # at the top of the working directory; `tag` picks the release (default: the
    # latest one the watch list saw).
    repo: uuid.UUID | None = None
    release_asset: str | None = Field(default=None, min_length=1, max_length=MAX_PATH)
    tag: str | None = Field(default=None, min_length=1, max_length=255)
    # How often the task is re-queued after the node running it went down.
    retries: int = Field(default=0, ge=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _seed_aliases(cls, data: object) -> object:
        if isinstance(data, dict):
            data = dict(data)
            for seed_name, name in SEED_ALIASES.items():
                if seed_name in data and name not in data:
                    data[name] = data.pop(seed_name)
        return data

    @model_validator(mode="after")
    def _asset_with_repo(self) -> TaskSpec:
        if (self.repo is None) != (self.release_asset is None):
            raise ValueError("repo and release_asset go together")
        if self.tag is not None and self.repo is None:
            raise ValueError("tag needs repo and release_asset")
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        return value

    @property
    def argv(self) -> list[str]:
        """The command as argv (empty: the image's default)."""
        if isinstance(self.command, str):
            return ["sh", "-c", self.command] if self.command.strip() else []
        return list(self.command)


@dataclass(frozen=True, slots=True)
class InputFile:
    """A file to place at `path` (relative, normalised) in the working directory: its
    bytes are `content`, or, once in the input store, the file `stored`."""

    path: str
    content: bytes = b""
    mode: int = 0o644
    mime_type: str = ""
    source_url: str = ""
    stored: StoredFile | None = None

    @property
    def size(self) -> int:
        return self.stored.size if self.stored is not None else len(self.content)


def safe_relative_path(name: str) -> str:
    """`name` as a normalised path beneath the working directory; InputError if it
    would escape it (absolute, `..`) or is empty."""
    if "\0" in name or "\\" in name:
        raise InputError(f"invalid file path {name!r}", status=400)
    normalised = posixpath.normpath("/" + name.strip()).lstrip("/")
    parts = name.replace("\\", "/").split("/")
    if not normalised or normalised == "." or ".." in parts or name.startswith("/"):
        raise InputError(f"invalid file path {name!r}: must be relative, without ..", status=400)
    if len(normalised) > MAX_PATH:
        raise InputError(f"file path too long: {name[:40]!r}...", status=400)
    return normalised


def _name_from_url(url: str) -> str:
    segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return segment or "download"


def _inline(spec: FileSpec) -> InputFile:
    assert spec.path is not None
    if spec.content is not None:
        data = spec.content.encode()
    else:
        try:
            data = base64.b64decode(spec.content_base64 or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"{spec.path}: content_base64 is not base64", status=400) from exc
    return InputFile(safe_relative_path(spec.path), data, spec.mode)


async def _fetched(spec: FileSpec, policy: OutboundPolicy) -> InputFile:
    assert spec.url is not None
    path = safe_relative_path(spec.path or _name_from_url(spec.url))
    fetched = await fetch_bytes(spec.url, policy)
    mime = fetched.content_type.split(";", 1)[0].strip()
    return InputFile(path, fetched.content, spec.mode, mime, spec.url)


async def _fetch_all(remote: Sequence[FileSpec], policy: OutboundPolicy) -> list[InputFile]:
    try:
        async with asyncio.TaskGroup() as group:
            fetches = [group.create_task(_fetched(f, policy)) for f in remote]
    except ExceptionGroup as group_error:
        # The first failure is the answer; the other fetches were cancelled.
        raise group_error.exceptions[0] from None
    return [fetch.result() for fetch in fetches]


async def gather_inputs(
    spec: TaskSpec,
    uploads: Sequence[InputFile],
    policy: OutboundPolicy,
    max_total_bytes: int,
) -> list[InputFile]:
    """Every input file of a task: inline ones, `uploads`, then URLs fetched in parallel.

    Raises InputError (duplicate path, too many, over `max_total_bytes`) and the fetch
    errors of :mod:`common.outbound` (OutboundRefused, OutboundTooLarge, OutboundFailed).
    """
    files = [_inline(f) for f in spec.files if f.url is None] + list(uploads)
    remote = [f for f in spec.files if f.url is not None]
    if len(files) + len(remote) > MAX_FILES:
        raise InputError(f"at most {MAX_FILES} input files", status=400)
    files += await _fetch_all(remote, policy)
    check_inputs(files, max_total_bytes)
    return files


def check_inputs(files: Sequence[InputFile], max_total_bytes: int) -> None:
    """InputError when there are more than MAX_FILES, two share a path, or they total
    over `max_total_bytes`."""
    if len(files) > MAX_FILES:
        raise InputError(f"at most {MAX_FILES} input files", status=400)
    seen: set[str] = set()
    total = 0
    for item in files:
        if item.path in seen:
            raise InputError(f"two input files at {item.path!r}", status=400)
        seen.add(item.path)
        total += item.size
    if total > max_total_bytes:
        raise InputError(
            f"input files total {total} bytes, more than the {max_total_bytes} allowed",
            status=413,
        )
