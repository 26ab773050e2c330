"""The `controlplane { }` block of config.hcl, with the environment overrides.

Environment variables (named as in seed 004) win over the file: DATABASE_URL,
JWT_SECRET, PORT, WEBHOOK_URL, DOMAIN_SUFFIX, SMTP_HOST, SMTP_PORT, SMTP_USERNAME,
SMTP_PASSWORD, EMAIL_FROM, EMAIL_FROM_NAME, ENCEDEUS_SECRETS_KEY. Seed 004's
AWS_SES_SMTP_HOST, AWS_SES_SMTP_PORT, AWS_SES_USERNAME and AWS_SES_PASSWORD name the
same SMTP settings (SES is reached over SMTP); the SMTP_* names win when both are set.
An empty variable counts as unset.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, field_validator

from common.config import load_section
from controlplane.quotas import QuotaLimits

# Later entries win: the AWS_SES_* aliases come before the SMTP_* names they stand for.
ENV_OVERRIDES: dict[str, str] = {
    "AWS_SES_SMTP_HOST": "smtp_host",
    "AWS_SES_SMTP_PORT": "smtp_port",
    "AWS_SES_USERNAME": "smtp_username",
    "AWS_SES_PASSWORD": "smtp_password",
    "DATABASE_URL": "database_url",
    "JWT_SECRET": "jwt_secret",
    "PORT": "port",
    "WEBHOOK_URL": "webhook_url",
    "WEBHOOK_SECRET": "webhook_secret",
    "DOMAIN_SUFFIX": "domain_suffix",
    "SMTP_HOST": "smtp_host",
    "SMTP_PORT": "smtp_port",
    "SMTP_USERNAME": "smtp_username",
    "SMTP_PASSWORD": "smtp_password",
    "EMAIL_FROM": "email_from",
    "EMAIL_FROM_NAME": "email_from_name",
    "ENCEDEUS_SECRETS_KEY": "secrets_key",
}

#: Seed 004 variables this control plane does not read, and what to do instead.
UNUSED_VARIABLES: dict[str, str] = {
    "REDIS_URL": "not needed: sessions and events live in the database (DATABASE_URL)",
    "KUBECONFIG_PATH": "containers run on enrolled Skyhook agents, not Kubernetes",
    "KUBERNETES_NAMESPACE": "containers run on enrolled Skyhook agents, not Kubernetes",
}

JWT_SECRET_FILE = "jwt_secret"  # noqa: S105
SQLITE_FILE = "encedeus.db"


class ControlPlaneConfig(BaseModel):
    """Validated settings of the control plane; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_address: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)
    data_dir: Path = Path("/var/lib/encedeus")
    database_url: str = ""
    jwt_secret: str = ""
    registration: Literal["open", "closed"] = "open"
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86400)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    password_reset_ttl_minutes: int = Field(default=30, ge=1, le=1440)
    # The web UI's address as people reach it ("https://panel.example.com"): reset mails
    # then link to its reset page with the token. Empty: the mail carries the token only.
    public_url: str = Field(default="", max_length=2000, pattern=r"^(https?://[^\s#?]+)?$")
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    auth_rate_limit: int = Field(default=10, ge=1)
    auth_rate_window_seconds: int = Field(default=60, ge=1)
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    # How long an access token's open session, once checked, is taken on trust.
    session_cache_seconds: float = Field(default=30.0, ge=0)
    webhook_url: str = ""
    webhook_secret: str = ""  # HMAC-SHA256 key of X-Encedeus-Signature; empty: unsigned
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    webhook_allow_private: bool = False  # let per-account webhooks reach private hosts
    # A delivery still failing this long after its first attempt is dead (no longer
    # holds back the receiver's later events); retries back off up to the max delay.
    webhook_dead_after_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_max_delay_seconds: float = Field(default=60.0, gt=0)
    # How long the event log keeps events (resumable cursors, GET /v1/events).
    event_retention_seconds: float = Field(default=24 * 3600.0, gt=0)
    email_notifications: bool = False  # mail owners when tasks end / deployments fail
    # /v1/ws/notifications: open sockets per account, and messages a second per socket.
    notification_sockets_per_account: int = Field(default=10, ge=1)
    notification_messages_per_second: int = Field(default=20, ge=1)
    task_fetch_allow_private: bool = False  # let task URLs reach loopback/private hosts
    # Networks that tenants' outbound requests (task URLs, webhooks) may reach even
    # though they are private, e.g. an internal mirror; never unspecified/multicast.
    outbound_allowed_networks: tuple[IPvAnyNetwork, ...] = ()
    task_fetch_max_bytes: int = Field(default=3 * 1024 * 1024, ge=1)
    task_fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    # All input files of one task together. They are streamed into the database in
    # chunks and fetched from there by the agent, so GiBs work in bounded memory.
    task_input_max_bytes: int = Field(default=4 * 1024**3, ge=1)
    domain_suffix: str = ""
    # Ingress (docs/ingress.md): how the ingress nodes serve apps. "acme": automatic
    # HTTPS with public certificates (on-demand for custom domains, gated by
    # /v1/ingress/ask); "internal": Caddy's own CA (closed networks, tests); "off":
    # plain HTTP only. `ingress_public_port` is the port in deployment URLs (0: the
    # scheme's default).
    ingress_tls: Literal["acme", "internal", "off"] = "acme"
    ingress_public_port: int = Field(default=0, ge=0, le=65535)
    # The URL ingress nodes ask before an on-demand certificate; empty: this control
    # plane's own /v1/ingress/ask at `public_url`.
    ingress_ask_url: str = ""
    # Nameservers (IP addresses, optionally "ip:port") for the custom-domain TXT check;
    # empty: the system's resolver configuration.
    domain_nameservers: tuple[str, ...] = ()
    # Let the HTTP-token check of custom domains reach loopback/private addresses
    # (labs, tests); `outbound_allowed_networks` applies as for every tenant fetch.
    domain_check_allow_private: bool = False
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_tls: Literal["auto", "starttls", "tls", "none"] = "auto"
    email_from: str = "encedeus@localhost"
    email_from_name: str = ""  # display name of the From header ("Name <address>")
    # Key of secrets at rest (forge tokens, registry credentials): 32 bytes in urlsafe
    # base64. Empty: generated once into <data_dir>/secrets_key (0600). Every control
    # plane sharing a database needs the same key.
    secrets_key: str = ""
    # Releases API of the forge that /v1/repos watches: GitHub, GitHub Enterprise
    # (https://HOST/api/v3) and Gitea/Forgejo (https://HOST/api/v1) speak the same one.
    forge_api_url: str = "https://api.github.com"
    forge_timeout_seconds: float = Field(default=15.0, gt=0)
    #: How long a token-less forge answer is shared by every account without asking
    #: the forge again (0: always ask; answers with an ETag are still revalidated).
    forge_anonymous_cache_seconds: float = Field(default=60.0, ge=0)
    #: An account checks its repos (`PATCH /v1/repos`) at most once per this many
    #: seconds (429 with Retry-After otherwise; 0: no limit).
    repo_check_interval_seconds: float = Field(default=60.0, ge=0)
    log_level: str = "info"
    shutdown_timeout_seconds: float = Field(default=10.0, ge=0)
    # Orchestration: node liveness, agent Watch streams, the reconciler.
    node_grace_seconds: float = Field(default=20.0, gt=0)
    heartbeat_interval_ms: int = Field(default=1000, ge=100, le=60_000)
    reconcile_interval_seconds: float = Field(default=2.0, gt=0)
    restart_backoff_base_seconds: float = Field(default=1.0, ge=0)
    restart_backoff_cap_seconds: float = Field(default=60.0, ge=0)
    # The data of a slot removed by scale-down is kept this long (docs/stateful.md).
    volume_grace_seconds: float = Field(default=7 * 86400.0, ge=0)
    # How often the leader looks for scheduled backups that are due (docs/stateful.md).
    backup_schedule_interval_seconds: float = Field(default=30.0, gt=0)
    # How often the leader sweeps the nodes for due volume copies (docs/stateful.md).
    volume_sweep_interval_seconds: float = Field(default=300.0, gt=0)
    agent_ca_file: str = ""  # PEM bundle: dial agents' gRPC with TLS when set
    # Several control planes on one PostgreSQL (docs/high-availability.md): how often a
    # follower tries to take the leader lease, and how often the leader checks that its
    # lease connection is alive (it stops acting at once when not). Failover takes
    # about leader_retry_seconds after the leader's connection ends.
    leader_retry_seconds: float = Field(default=1.0, gt=0, le=60)
    leader_probe_seconds: float = Field(default=1.0, gt=0, le=60)
    instance_name: str = ""  # this process in logs and the cluster row; default host:pid
    # Images deployments may use: prefixes of the full name (registry/repository, e.g.
    # "docker.io/library/", "registry.example.com/team/"). Empty: any image.
    image_allowlist: tuple[str, ...] = ()
    # Images from registries at loopback/private/link-local IP literals or `localhost`
    # are refused (403) unless image_allowlist names them or this is true (a lab, a
    # local registry of `encedeus up`).
    image_registries_allow_private: bool = False
    # Copied onto every account when it is made; admins change it per account.
    default_quota: QuotaLimits = QuotaLimits()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return with_async_driver(value)

    def resolved_database_url(self) -> str:
        """DATABASE_URL, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / SQLITE_FILE}"


def with_async_driver(url: str) -> str:
    """`postgresql://` and `postgres://` (what operators and seed 004 write) as the
    asyncpg URL the engine needs, libpq's `sslmode` renamed to asyncpg's `ssl`; any
    other URL unchanged."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("postgres", "postgresql"):
        return url
    parts = urlsplit(f"postgresql+asyncpg://{rest}")
    query = [("ssl" if key == "sslmode" else key, value) for key, value in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def environment_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The config keys that the environment sets (empty values are ignored)."""
    return {key: environ[var] for var, key in ENV_OVERRIDES.items() if environ.get(var)}


def unused_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The seed variables set in `environ` that are not read, with what to do instead
    (so that an operator who set them is told, not silently ignored)."""
    return {name: hint for name, hint in UNUSED_VARIABLES.items() if environ.get(name)}


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> ControlPlaneConfig:
    """Read the controlplane block of `path` (may be None) and apply the environment."""
    env = os.environ if environ is None else environ
    return load_section(path, "controlplane", ControlPlaneConfig, environment_overrides(env))


def prepare_data_dir(config: ControlPlaneConfig) -> str:
    """Create the data directory (0700: it holds the database and the JWT secret) and
    the embedded database's file (0600; SQLite gives its WAL files the same mode),
    whatever the umask; return the JWT secret. Existing ones are left as they are.

    Blocking file I/O: call it from a thread (or before the event loop starts).
    """
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not config.database_url:
        database = config.data_dir / SQLITE_FILE
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    return resolve_jwt_secret(config)


def resolve_jwt_secret(config: ControlPlaneConfig) -> str:
    """The configured secret, or one generated once and kept in the data directory.

    Blocking file I/O: call it from a thread (or before the event loop starts).
    """
    if config.jwt_secret:
        return config.jwt_secret
    return secret_in_data_dir(config, JWT_SECRET_FILE, lambda: secrets.token_urlsafe(48))


class SecretFileEmpty(RuntimeError):
    """A secret file in the data directory exists but is empty (written by a version
    that could crash between creating and writing it): never used as a key."""


def secret_in_data_dir(config: ControlPlaneConfig, name: str, generate: Callable[[], str]) -> str:
    """The secret kept in `<data_dir>/<name>`, written (0600) from `generate()` on
    first use. Two processes starting at once end with the same secret. The file
    appears whole or not at all (written aside, then hard-linked into place); an
    empty one raises SecretFileEmpty, never an empty secret.

    Blocking file I/O: call it from a thread (or before the event loop starts).
    """
    path = config.data_dir / name
    existing = _read_secret(path)
    if existing is not None:
        return existing
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secret = generate()
    aside = path.with_name(f".{name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        # link, not rename: it fails when another process put its secret there first.
        os.link(aside, path)
    except FileExistsError:
        other = _read_secret(path)
        assert other is not None
        return other
    finally:
        os.unlink(aside)
    return secret


def _read_secret(path: Path) -> str | None:
    """The secret in `path`; None when there is no such file; SecretFileEmpty when
    the file is empty."""
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not existing:
        raise SecretFileEmpty(
            f"{path} is empty (a crash while it was first written?): restore it from a "
            "backup, or remove it to generate a new one (what it protected is then lost)"
        )
    return existing
