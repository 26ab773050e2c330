"""The `agent { }` block of config.hcl, validated.

Every key is optional; unknown keys are an error that names the key and line
(see :mod:`common.config`). `SKYHOOK_*` environment variables are not read here:
the CLI passes explicit overrides.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.config import ConfigError, load_section


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Block):
    """One listening address."""

    host: str = "0.0.0.0"
    port: int = Field(ge=0, le=65535)


class HttpListen(Listen):
    """The HTTP port (console and exec WebSockets, file API): https and wss when
    `cert_file` and `key_file` are set. `public_url` is how browsers reach it (e.g.
    "https://node-a.example.net:8081", or a reverse proxy's URL); empty: the scheme,
    the advertised host and the bound port."""

    cert_file: str = ""
    key_file: str = ""
    public_url: str = ""

    @model_validator(mode="after")
    def _valid(self) -> HttpListen:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file must be set together")
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("public_url must be an http:// or https:// URL with a host")
            if parts.query or parts.fragment:
                raise ValueError("public_url takes no query or fragment")
        return self

    @property
    def tls(self) -> bool:
        return bool(self.cert_file)


class PortRange(_Block):
    """Host ports the agent may publish container ports on (inclusive)."""

    start: int = Field(default=25565, ge=1, le=65535)
    end: int = Field(default=25665, ge=1, le=65535)

    @model_validator(mode="after")
    def _ordered(self) -> PortRange:
        if self.end < self.start:
            raise ValueError("end must not be below start")
        return self


class Reserved(_Block):
    """Resources kept back for the host (not offered to the scheduler)."""

    cpu_millis: int = Field(default=0, ge=0)
    memory_mb: int = Field(default=0, ge=0)
    disk_mb: int = Field(default=0, ge=0)  # of the volumes' filesystem: not for disk limits

    @property
    def disk_bytes(self) -> int:
        return self.disk_mb * 2**20


class Tls(_Block):
    """Server certificate for gRPC; both paths set turns TLS on. `client_ca_file`
    additionally requires a client certificate signed by that CA (mutual TLS)."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    @model_validator(mode="after")
    def _both_or_neither(self) -> Tls:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file must be set together")
        if self.client_ca_file and not self.cert_file:
            raise ValueError("client_ca_file needs cert_file and key_file")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


class Console(_Block):
    """Console history and browser WebSocket limits."""

    history_lines: int = Field(default=1000, ge=10, le=100_000)
    ws_allowed_origins: list[str] = []  # empty: any Origin (or none) is accepted
    # Authenticated sockets per server; sockets that have not authenticated yet are
    # capped per client address instead, so they cannot lock a server's owner out.
    ws_max_sockets_per_server: int = Field(default=30, ge=1)
    ws_max_unauthenticated_per_address: int = Field(default=4, ge=1)
    ws_max_message_bytes: int = Field(default=4096, ge=64)
    ws_max_messages_per_second: int = Field(default=10, ge=1)
    # A socket this long without a valid token (never sent one, or let it expire) is closed.
    ws_auth_timeout_seconds: float = Field(default=10.0, gt=0)


class ImageGc(_Block):
    """Removal of image names no server of this node has used for `unused_seconds`
    (0 turns it off), checked every `interval_seconds`; `protected` references are
    never removed."""

    unused_seconds: float = Field(default=86400.0, ge=0)
    interval_seconds: float = Field(default=600.0, gt=0)
    protected: list[str] = []


class Ingress(_Block):
    """The ingress role: this agent runs Caddy (`caddy_binary`, started and restarted
    by the agent) on `http_port`/`https_port` of `listen_host`, with its admin API on
    `admin_socket` (default `<data_dir>/ingress/admin.sock`; a unix socket because
    the admin API has no authentication). `storage_dir` keeps only TLS state and may
    be shared by every ingress host (default `<data_dir>/ingress/tls`).
    `dial_containers`: this node's own replicas are dialled at their container's
    address, not through Docker's port proxy (docs/ingress.md)."""

    enabled: bool = False
    caddy_binary: str = "caddy"
    listen_host: str = ""  # empty: every address
    http_port: int = Field(default=80, ge=1, le=65535)
    https_port: int = Field(default=443, ge=1, le=65535)
    admin_socket: str = ""
    storage_dir: str = ""
    dial_containers: bool = True


class Backups(_Block):
    """Where restic keeps this node's backups (docs/stateful.md). Empty `repository`:
    a repository of this node's own at `<data_dir>/backups`, with a password the agent
    makes (`<data_dir>/backups.key`). Otherwise any restic repository URL
    (`sftp:user@host:/path`, `s3:...`, `rest:...`) shared by the fleet, with its
    `password` or `password_file`. Secrets reach restic through its environment or a
    file, never its command line, and are never logged."""

    restic_binary: str = "restic"
    repository: str = ""
    password: str = ""
    password_file: str = ""
    # Extra environment for restic (e.g. AWS_ACCESS_KEY_ID for an S3 repository).
    env: dict[str, str] = {}
    # restic `-o key=value` options (e.g. sftp.command); not for secrets.
    options: dict[str, str] = {}

    @model_validator(mode="after")
    def _password_for_shared(self) -> Backups:
        if self.repository and not (self.password or self.password_file):
            raise ValueError("a backup repository needs a password or password_file")
        if self.password and self.password_file:
            raise ValueError("set password or password_file, not both")
        return self


class AgentConfig(_Block):
    """The validated agent block."""

    data_dir: str = "/var/lib/skyhook"
    node_id: str = ""  # set by enrolment (node secret file) or here for dev/tests
    node_secret: str = ""  # direct secret, for development and tests
    node_secret_file: str = ""  # default <data_dir>/node.json
    controlplane_url: str = ""
    join_token: str = ""
    # The address the control plane and browsers use to reach this host; empty means
    # the listen host. For a wildcard listen: loopback for gRPC and SFTP (a
    # single-machine setup), the host's primary address for the browsers' HTTP URL.
    advertise_host: str = ""
    grpc: Listen = Listen(port=50051)
    http: HttpListen = HttpListen(port=8081)
    sftp: Listen = Listen(port=2022)
    port_range: PortRange = PortRange()
    reserved: Reserved = Reserved()
    tls: Tls = Tls()
    console: Console = Console()
    labels: dict[str, str] = {}  # extra labels on every container this agent creates
    # The Docker network containers with networking join. Missing, it is created as a
    # bridge without traffic between its containers (each reaches only the host and
    # its published ports). "bridge" is Docker's default bridge, where every
    # container can reach every other's unpublished ports; another existing network
    # is used as it is.
    network: str = Field(default="encedeus", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    # "uid:gid" (numbers) every server runs as inside its container, and the owner of
    # its data directory, unless its spec asks for root. Not 0: root is per server.
    container_user: str = Field(default="988:988", pattern=r"^[0-9]{1,10}:[0-9]{1,10}$")
    default_pids_limit: int = Field(default=512, ge=16)
    log_max_size: str = "10m"  # json-file log driver size per file
    log_max_files: int = Field(default=3, ge=1)
    disk_usage_interval_seconds: float = Field(default=30.0, gt=0)
    watchdog: bool = True
    log_level: str = "info"
    docker_threads: int = Field(default=16, ge=2, le=256)
    # A pull whose byte count has not grown for this long is abandoned as
    # registry_unreachable (the engine alone would retry for about a minute).
    pull_stall_seconds: float = Field(default=60.0, gt=0)
    image_gc: ImageGc = ImageGc()
    ingress: Ingress = Ingress()
    # The host address container ports are published on (e.g. a private interface, so
    # that web apps are reachable only through the ingress); empty: every address.
    publish_address: str = ""
    backups: Backups = Backups()

    @field_validator("container_user")
    @classmethod
    def _unprivileged(cls, value: str) -> str:
        uid, gid = (int(part) for part in value.split(":"))
        if uid == 0 or gid == 0 or max(uid, gid) > 2**32 - 2:
            raise ValueError("must be an unprivileged uid:gid (neither 0)")
        return value

    @property
    def container_ids(self) -> tuple[int, int]:
        """`container_user` as numbers."""
        uid, gid = self.container_user.split(":")
        return int(uid), int(gid)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def ingress_dir(self) -> Path:
        """Caddy's run directory (admin socket, log, bootstrap config)."""
        return self.data_path / "ingress"

    @property
    def node_file(self) -> Path:
        return (
            Path(self.node_secret_file) if self.node_secret_file else self.data_path / "node.json"
        )


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who this node is to the control plane: its id and the shared secret."""

    node_id: str
    node_secret: str


def load_agent_config(path: Path | None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """Read and validate the agent block of `path` (defaults when `path` is None)."""
    return load_section(path, "agent", AgentConfig, overrides)


def load_identity(config: AgentConfig) -> NodeIdentity | None:
    """The node identity from config or the node secret file; None means "enrol first".

    Blocking file I/O: call before the event loop starts or from a thread.
    """
    if config.node_secret:
        return NodeIdentity(node_id=config.node_id or "local", node_secret=config.node_secret)
    path = config.node_file
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return NodeIdentity(node_id=str(data["node_id"]), node_secret=str(data["node_secret"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"unreadable node secret file {path}: {exc}") from exc


def store_identity(config: AgentConfig, identity: NodeIdentity) -> None:
    """Persist the identity (mode 0600) so that a restart does not enrol again."""
    path = config.node_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Created 0600: the secret is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps({"node_id": identity.node_id, "node_secret": identity.node_secret}))
    tmp.chmod(0o600)  # a leftover tmp file keeps its old mode through O_CREAT
    tmp.replace(path)
