"""The template model: what a server made from a template is, as data.

A template ("egg" in Pterodactyl, "plugin" in seed 000) names its images, a startup
command with `{{VARIABLE}}` placeholders, the variables an owner fills in, an install
script, a done pattern, how to stop, config-file edits, the ports it wants, a disk
default and where its data is mounted. The model is pure: parsing (HCL, eggs) and
resolving it into a deployment live next to it. Every validation error names the
field, and for variables the variable.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.quantities import parse_disk_bytes
from controlplane.templates.rules import VariableRules, check_value

SLUG_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
SIGNAL_PATTERN = r"^(SIG)?[A-Z0-9]+$"
# Built-ins every server gets, beside the template's own variables.
BUILTINS = ("SERVER_PORT", "SERVER_IP", "SERVER_MEMORY", "INTERNAL_IP")
EGG_DATA_PATH = "/home/container"
DEFAULT_DATA_PATH = "/data"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
# Placeholders of config-file values; `env.<NAME>` names a variable or built-in.
CONFIG_PLACEHOLDERS = ("server.port", "server.ip", "server.memory")
ConfigParser = Literal["properties", "yaml", "json", "ini", "file"]
Protocol = Literal["tcp", "udp"]


class Strict(BaseModel):
    """A template part: unknown keys are errors, so a typo is never ignored."""

    model_config = ConfigDict(extra="forbid")


class Variable(Strict):
    """One environment variable the owner may set. Values are strings (the
    environment's type); `rules.kind` says how to read them."""

    env: str = Field(pattern=ENV_NAME_PATTERN)
    name: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=4000)
    default: str = Field(default="", max_length=4096)
    user_viewable: bool = True
    user_editable: bool = True
    rules: VariableRules = Field(default_factory=VariableRules)

    @model_validator(mode="after")
    def _default_obeys_rules(self) -> Variable:
        # A required variable may leave its default empty: the owner must give one.
        if self.default != "":
            problem = check_value(self.rules, self.default)
            if problem is not None:
                raise ValueError(f"default {self.default!r} {problem}")
        if not self.user_editable and self.rules.required and self.default == "":
            raise ValueError("a required variable the owner cannot edit needs a default")
        return self


class InstallScript(Strict):
    """Run once in an install container (as root, without capabilities) with the
    server's files at /mnt/server; `network` gives it the network."""

    image: str = Field(min_length=1, max_length=255)
    entrypoint: str = Field(default="sh", min_length=1, max_length=255)
    script: str = Field(min_length=1, max_length=65536)
    network: bool = False


class StopSpec(Strict):
    """A console command written to stdin, or a signal (SIGTERM when neither)."""

    command: str = Field(default="", max_length=255)
    signal: str = Field(default="", max_length=16)
    timeout_seconds: int = Field(default=30, ge=1, le=3600)

    @model_validator(mode="after")
    def _one_way(self) -> StopSpec:
        if self.command and self.signal:
            raise ValueError("give a stop command or a stop signal, not both")
        if self.signal and not re.match(SIGNAL_PATTERN, self.signal):
            raise ValueError(f"stop signal {self.signal!r} is not a signal name")
        return self


class BackupCommands(Strict):
    """Console lines around a backup, so the files are consistent (a game server's
    `save-off` + `save-all` before, `save-on` after); `settle_seconds` is how long to
    wait after the `before` lines for the server to finish writing."""

    before: list[str] = Field(default_factory=list, max_length=16)
    after: list[str] = Field(default_factory=list, max_length=16)
    settle_seconds: int = Field(default=0, ge=0, le=300)


class ConfigFile(Strict):
    """Edits applied before each start to `path` (relative to the data directory).
    `set` maps a key — a dotted path for yaml/json, `section.key` for ini, the key for
    properties, a line prefix for `file` (the whole line is replaced) — to a value
    that may hold `{{server.port}}`, `{{server.ip}}`, `{{server.memory}}` and
    `{{env.NAME}}` placeholders."""

    path: str = Field(min_length=1, max_length=1024)
    parser: ConfigParser
    set: dict[str, str] = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.replace("\\", "/").split("/")
        if value.startswith("/") or ".." in parts or "\x00" in value:
            raise ValueError(f"config file path {value!r} must stay inside the data directory")
        return value


def _tcp_only() -> list[Protocol]:
    return ["tcp"]


class PortWanted(Strict):
    """A port the server listens on. Without `container_port` the container listens on
    the host port it is given (the egg contract: both equal SERVER_PORT)."""

    name: str = Field(min_length=1, max_length=63)
    protocols: list[Protocol] = Field(default_factory=_tcp_only, min_length=1)
    container_port: int | None = Field(default=None, ge=1, le=65535)


class Template(Strict):
    """A whole template. `egg` selects the egg image contract: the startup command is
    passed as STARTUP (`{{VAR}}` turned into `${VAR}`) for the image's entrypoint to
    run, and the data directory is mounted at /home/container."""

    id: str = Field(pattern=SLUG_PATTERN)
    version: str = Field(default="1", min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)
    description: str = Field(default="", max_length=10000)
    images: dict[str, str] = Field(min_length=1)
    startup: str = Field(min_length=1, max_length=10000)
    egg: bool = False
    data_path: str = ""
    variables: list[Variable] = Field(default_factory=list)
    install: InstallScript | None = None
    done: str = Field(default="", max_length=1000, description="a regex")
    stop: StopSpec = Field(default_factory=StopSpec)
    config_files: list[ConfigFile] = Field(default_factory=list)
    ports: list[PortWanted] = Field(default_factory=list, max_length=16)
    disk: str | None = None
    restart_policy: Literal["always", "on-failure", "never"] | None = None
    backup: BackupCommands = Field(default_factory=BackupCommands)

    @field_validator("images")
    @classmethod
    def _images(cls, value: dict[str, str]) -> dict[str, str]:
        for label, image in value.items():
            if not label or not image or len(image) > 255:
                raise ValueError(f"image {label!r} needs a label and a reference")
        return value

    @field_validator("done")
    @classmethod
    def _done_regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"done pattern is not a valid regex: {exc}") from exc
        return value

    @field_validator("disk")
    @classmethod
    def _disk(cls, value: str | None) -> str | None:
        if value is not None:
            parse_disk_bytes(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Template:
        if not self.data_path:
            self.data_path = EGG_DATA_PATH if self.egg else DEFAULT_DATA_PATH
        if not self.data_path.startswith("/") or ".." in self.data_path.split("/"):
            raise ValueError(f"data_path {self.data_path!r} must be an absolute path")
        names = [v.env for v in self.variables]
        for env in names:
            if env in BUILTINS or names.count(env) > 1:
                raise ValueError(f"variable {env}: declared twice or shadows a built-in")
        known = set(names) | set(BUILTINS)
        for name in PLACEHOLDER.findall(self.startup):
            if name not in known:
                raise ValueError(f"startup uses {{{{{name}}}}}, which is no variable")
        for config in self.config_files:
            _check_config_placeholders(config, known)
        if len({p.name for p in self.ports}) != len(self.ports):
            raise ValueError("two ports have the same name")
        return self

    def default_image(self) -> str:
        """The first image: the one used when the owner names none."""
        return next(iter(self.images.values()))

    def variable(self, env: str) -> Variable | None:
        """The variable named `env`, if the template declares it."""
        return next((v for v in self.variables if v.env == env), None)


def _check_config_placeholders(config: ConfigFile, known: set[str]) -> None:
    for key, value in config.set.items():
        for name in PLACEHOLDER.findall(value):
            env = name.removeprefix("env.")
            if name in CONFIG_PLACEHOLDERS or (name.startswith("env.") and env in known):
                continue
            raise ValueError(f"config file {config.path}, key {key}: unknown {{{{{name}}}}}")


def escape_literal(text: str) -> str:
    """`text` as a regex matching it literally, escaping only the characters that are
    special in both Python and JavaScript (so the result reads the same in both)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}/])", r"\\\1", text)


def literal_of(pattern: str) -> str | None:
    """The text a regex made by :func:`escape_literal` matches, or None when the regex
    is not such a literal."""
    text = re.sub(r"\\(.)", r"\1", pattern)
    return text if escape_literal(text) == pattern else None


def done_pattern(spec: str | list[str]) -> str:
    """The regex for a done pattern as templates write it: `regex:<re>` is used as is,
    any other text (or each of a list, any of which will do) matches literally."""
    items = [spec] if isinstance(spec, str) else spec
    return "|".join(
        item.removeprefix("regex:") if item.startswith("regex:") else escape_literal(item)
        for item in items
        if item
    )
