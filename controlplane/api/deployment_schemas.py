"""Request and response shapes of /v1/deployments (seed 004, plus the container
options of DESIGN.md: command, ports, restart policy, stop command/signal/timeout)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from common.image_reference import parse_image_reference
from common.quantities import parse_cpu_millis, parse_disk_bytes, parse_memory_bytes
from controlplane.api.pagination import PageQuery, Pagination
from controlplane.api.schemas import Request
from controlplane.port_protocols import TCP, PortProtocol, carries_tcp

APP_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
SIGNAL_PATTERN = r"^(SIG)?[A-Z0-9]+$"
MAX_REPLICAS = 100
Port = Annotated[int, Field(ge=1, le=65535)]


class PortRequest(Request):
    """A port with its transport protocol; a plain integer is a TCP port (seed 004)."""

    port: Port
    protocol: PortProtocol = TCP


def _port_list(ports: list[int | PortRequest]) -> list[PortRequest]:
    """The ports as PortRequests, repeats dropped; one number given with two different
    protocols is refused (one host port serves both only as "tcp+udp")."""
    chosen: dict[int, PortRequest] = {}
    for item in ports:
        port = item if isinstance(item, PortRequest) else PortRequest(port=item)
        previous = chosen.setdefault(port.port, port)
        if previous.protocol != port.protocol:
            raise ValueError(
                f"port {port.port} is given as {previous.protocol} and as {port.protocol}; "
                'give it once with "protocol": "tcp+udp"'
            )
    return list(chosen.values())


# Docker passes the environment as KEY=VALUE: a key may hold neither `=` nor NUL.
EnvKey = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^=\x00]+$")]
RestartPolicyName = Literal["always", "on-failure", "never"]
NodeLossPolicyName = Literal["wait", "move"]
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_MOVE_AFTER_SECONDS = 30 * 86400


def duration_seconds(value: int | str) -> int:
    """Seconds of a duration: a number of seconds, or digits and a unit ("90s", "10m",
    "2h", "1d"); ValueError for anything else or beyond 30 days."""
    if isinstance(value, str):
        text = value.strip()
        if not text[:-1].isdigit() or text[-1:] not in DURATION_UNITS or not text.isascii():
            raise ValueError("a duration is digits and a unit: s, m, h or d (e.g. 10m)")
        value = int(text[:-1]) * DURATION_UNITS[text[-1]]
    if not 0 <= value <= MAX_MOVE_AFTER_SECONDS:
        raise ValueError(f"a duration is 0 to {MAX_MOVE_AFTER_SECONDS} seconds (30d)")
    return value


StatusName = Literal["pending", "running", "updating", "stopped", "failed"]


class ResourcesSpec(Request):
    """CPU ("100m", "0.5"), memory ("128Mi", "1Gi") and disk ("2Gi": the limit of each
    replica's volume, enforced by the kernel; "" or absent: none) per replica, as
    :mod:`common.quantities` reads them (at least 10m, 6Mi and 16Mi once rounded)."""

    cpu: str = "100m"
    memory: str = "128Mi"
    disk: str = Field(default="", max_length=16)

    @field_validator("disk")
    @classmethod
    def _disk(cls, value: str) -> str:
        if value:
            parse_disk_bytes(value)
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        parse_cpu_millis(value)
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        parse_memory_bytes(value)
        return value


class HealthCheckSpec(Request):
    """One probe — `path` (HTTP GET on the first port), `tcp_port` or `command` —
    and its timings."""

    path: str | None = Field(default=None, max_length=255, pattern=r"^/")
    tcp_port: int | None = Field(default=None, ge=1, le=65535)
    command: str | None = Field(default=None, min_length=1, max_length=1000)
    initial_delay_seconds: int = Field(default=0, ge=0, le=3600)
    period_seconds: int = Field(default=10, ge=1, le=3600)
    timeout_seconds: int = Field(default=5, ge=1, le=3600)
    failure_threshold: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _one_probe(self) -> HealthCheckSpec:
        probes = [p for p in (self.path, self.tcp_port, self.command) if p is not None]
        if len(probes) != 1:
            raise ValueError("give exactly one of path, tcp_port and command")
        return self


PullPolicyName = Literal["if_not_present", "always", "never"]


class RegistryAuth(Request):
    """Credentials for the image's registry (seed 004). Stored sealed; sent only to
    the node that pulls; never returned. `server_address` defaults to the registry
    the image reference names."""

    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=4096, repr=False)
    server_address: str = Field(default="", max_length=255)


class RegistryAuthView(BaseModel):
    """What the API shows of stored credentials: never the password."""

    username: str
    server_address: str
    configured: bool = True


class DeploymentOptions(Request):
    """Fields shared by create and update."""

    command: list[str] | str | None = None
    env_vars: dict[EnvKey, str] | None = None
    resources: ResourcesSpec | None = None
    health_check: HealthCheckSpec | None = None
    restart_policy: RestartPolicyName | None = None
    stop_command: str | None = Field(default=None, max_length=255)
    stop_signal: str | None = Field(default=None, max_length=16, pattern=SIGNAL_PATTERN)
    stop_timeout: int | None = Field(default=None, ge=1, le=3600)
    # Root inside the container, without any capability (docs/security.md); the
    # default is the node's unprivileged container user.
    run_as_root: bool | None = None
    pull_policy: PullPolicyName | None = None
    # An update with `null` keeps the stored credentials; `{}` is refused.
    registry_auth: RegistryAuth | None = None
    # When a slot's node is lost (docs/stateful.md): wait for it (and with
    # `move_after`, a duration, move after that long; 0: never) or move at once.
    on_node_loss: NodeLossPolicyName | None = None
    move_after: Annotated[int, Field(strict=True)] | str | None = None

    @field_validator("move_after")
    @classmethod
    def _move_after_is_a_duration(cls, value: int | str | None) -> int | str | None:
        return None if value is None else duration_seconds(value)

    @model_validator(mode="after")
    def _move_after_needs_wait(self) -> DeploymentOptions:
        if self.move_after and self.on_node_loss == "move":
            raise ValueError("move_after goes with on_node_loss = wait")
        return self

    def command_list(self) -> list[str] | None:
        """The command as argv: a string runs under `sh -c`."""
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return self.command


def _image_reference(value: str | None) -> str | None:
    if value is not None:
        parse_image_reference(value)  # InvalidReference is a ValueError: a 400
    return value


class CreateDeployment(DeploymentOptions):
    """A new deployment."""

    app_name: str = Field(min_length=1, max_length=63, pattern=APP_NAME_PATTERN)
    image: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    ports: list[Port | PortRequest] = Field(default_factory=list, max_length=16)
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    strategy: Literal["binpack", "spread"] = "spread"
    constraints: dict[str, str] = Field(default_factory=dict)
    # Which of the ports the ingress routes web traffic to (default: the first).
    http_port: int | None = Field(default=None, ge=1, le=65535)

    _image = field_validator("image")(_image_reference)
    # From a template (docs/templates.md) instead of an image: its id, the variables'
    # values and optionally which of its images (by label).
    template: str | None = Field(default=None, min_length=1, max_length=63)
    variables: dict[EnvKey, str] | None = None
    image_label: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _image_or_template(self) -> CreateDeployment:
        if (self.image is None) == (self.template is None):
            raise ValueError("give either image or template")
        if self.template is None and (self.variables is not None or self.image_label):
            raise ValueError("variables and image_label need a template")
        return self

    @model_validator(mode="after")
    def _http_port_is_a_port(self) -> CreateDeployment:
        ports = {p.port: p.protocol for p in self.port_requests()}
        if self.http_port is not None and self.http_port not in ports:
            raise ValueError("http_port must be one of the deployment's ports")
        if self.http_port is not None and not carries_tcp(ports[self.http_port]):
            raise ValueError(f"http_port {self.http_port} must be a TCP port, not UDP only")
        return self

    def port_requests(self) -> list[PortRequest]:
        """`port` (TCP) and `ports` together, without repeats."""
        return _port_list([*([self.port] if self.port else []), *self.ports])

    def all_ports(self) -> list[int]:
        """The container port numbers, in order."""
        return [p.port for p in self.port_requests()]

    def port_protocols(self) -> list[str]:
        """The protocol of each of `all_ports`."""
        return [p.protocol for p in self.port_requests()]


class UpdateDeployment(DeploymentOptions):
    """Changes; image/command/env/resources/health/stop changes roll out one replica
    at a time. `ports` may change numbers but not how many there are."""

    image: str | None = Field(default=None, min_length=1, max_length=255)
    ports: list[Port | PortRequest] | None = Field(default=None, max_length=16)
    replicas: int | None = Field(default=None, ge=0, le=MAX_REPLICAS)
    remove_registry_auth: bool = False

    _image = field_validator("image")(_image_reference)

    @model_validator(mode="after")
    def _ports_distinct(self) -> UpdateDeployment:
        self.port_requests()
        return self

    def port_requests(self) -> list[PortRequest] | None:
        """The new ports with their protocols (None: unchanged)."""
        return None if self.ports is None else _port_list(list(self.ports))


class TemplateVariables(Request):
    """New values for a template-made deployment's variables (the others keep theirs),
    resolved against the template's current version and rolled out."""

    variables: dict[EnvKey, str] = Field(default_factory=dict)
    image_label: str | None = Field(default=None, min_length=1, max_length=255)


class ScaleDeployment(Request):
    """The wanted number of replicas."""

    replicas: int = Field(ge=0, le=MAX_REPLICAS)


class ConsoleCommand(Request):
    """One line for the replicas' stdin."""

    command: str = Field(min_length=1, max_length=4096)
    replica: int | None = Field(default=None, ge=0, description="only this ordinal")


class DeploymentQuery(PageQuery):
    """List filter."""

    status: StatusName | None = None


class DeleteQuery(BaseModel):
    """`?delete_data=true` also removes the replicas' data directories."""

    delete_data: bool = False


class LogsQuery(BaseModel):
    """`tail` lines per replica, and whether to keep streaming."""

    tail: int = Field(default=100, ge=0, le=10_000)
    follow: bool = False


class ConsoleQuery(BaseModel):
    """Which replica's console (by ordinal)."""

    replica: int = Field(default=0, ge=0)


class CreatedDeployment(BaseModel):
    """Seed 004's answer to create."""

    id: uuid.UUID
    app_name: str
    image: str
    status: str
    url: str | None
    created_at: datetime
    message: str


class DeploymentSummary(BaseModel):
    """A deployment in a list."""

    id: uuid.UUID
    app_name: str
    image: str
    status: str
    url: str | None
    replicas: int
    created_at: datetime
    updated_at: datetime


class DeploymentList(BaseModel):
    """A page of the caller's deployments."""

    deployments: list[DeploymentSummary]
    pagination: Pagination


class DeploymentDetails(DeploymentSummary):
    """Everything about one deployment."""

    user_id: uuid.UUID
    port: int | None
    ports: list[int]
    port_protocols: list[str] = Field(
        default_factory=list, description='"tcp", "udp" or "tcp+udp" for each of `ports`'
    )
    http_port: int | None = None
    command: list[str]
    env_vars: dict[str, str]
    resources: dict[str, str]
    health_check: dict[str, Any] | None
    restart_policy: str
    stop_command: str
    stop_signal: str
    stop_timeout: int
    run_as_root: bool
    template: dict[str, Any] | None = Field(
        default=None, description="id, version, image_label and variables, when made from one"
    )
    strategy: str
    constraints: dict[str, str]
    on_node_loss: str
    move_after_seconds: int | None = None
    generation: int
    deployed_at: datetime | None
    error_message: str | None
    error_code: str | None
    pull_policy: str
    registry_auth: RegistryAuthView | None
    image_digest: str | None


class DeploymentChanged(BaseModel):
    """The answer to update, scale, start, stop, restart and kill."""

    id: uuid.UUID
    status: str
    replicas: int | None = None
    message: str
    updated_at: datetime | None = None


class DeletedDeployment(BaseModel):
    """Seed 004's answer to delete."""

    message: str
    deployment_id: uuid.UUID
    app_name: str
    namespace_deleted: bool
    data_deleted: bool


class CommandSent(BaseModel):
    """How many replicas received the line."""

    message: str
    sent_to: int


class ConsoleAccess(BaseModel):
    """Where the browser connects for a replica's console, with a short-lived token."""

    url: str
    token: str
    expires_at: datetime
    server_id: str
    node_id: str
