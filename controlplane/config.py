"""The `controlplane { }` block of config.hcl, with the environment overrides.

Environment variables (named as in seed 004) win over the file: DATABASE_URL,
JWT_SECRET, PORT, WEBHOOK_URL, DOMAIN_SUFFIX, SMTP_HOST, SMTP_PORT, SMTP_USERNAME,
SMTP_PASSWORD, EMAIL_FROM. An empty variable counts as unset.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork

from common.config import load_section

ENV_OVERRIDES: dict[str, str] = {
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
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    auth_rate_limit: int = Field(default=10, ge=1)
    auth_rate_window_seconds: int = Field(default=60, ge=1)
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    webhook_url: str = ""
    webhook_secret: str = ""  # HMAC-SHA256 key of X-Encedeus-Signature; empty: unsigned
    webhook_max_attempts: int = Field(default=6, ge=1, le=20)
    webhook_allow_private: bool = False  # let per-account webhooks reach private hosts
    email_notifications: bool = False  # mail owners when tasks end / deployments fail
    task_fetch_allow_private: bool = False  # let task URLs reach loopback/private hosts
    task_fetch_max_bytes: int = Field(default=3 * 1024 * 1024, ge=1)
    task_fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    # All input files of one task; they travel in one gRPC message to the agent.
    task_input_max_bytes: int = Field(default=3 * 1024 * 1024, ge=1)
    domain_suffix: str = ""
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_tls: Literal["auto", "starttls", "tls", "none"] = "auto"
    email_from: str = "encedeus@localhost"
    log_level: str = "info"
    shutdown_timeout_seconds: float = Field(default=10.0, ge=0)
    # Orchestration: node liveness, agent Watch streams, the reconciler.
    node_grace_seconds: float = Field(default=20.0, gt=0)
    heartbeat_interval_ms: int = Field(default=1000, ge=100, le=60_000)
    reconcile_interval_seconds: float = Field(default=2.0, gt=0)
    restart_backoff_base_seconds: float = Field(default=1.0, ge=0)
    restart_backoff_cap_seconds: float = Field(default=60.0, ge=0)
    agent_ca_file: str = ""  # PEM bundle: dial agents' gRPC with TLS when set
    # Key of secrets at rest (registry credentials): a Fernet key; empty: generated
    # once into <data_dir>/secrets_key. Control planes sharing a database share it.
    secrets_key: str = ""
    # Images deployments may use: prefixes of the full name (registry/repository, e.g.
    # "docker.io/library/", "registry.example.com/team/"). Empty: any image.
    image_allowlist: tuple[str, ...] = ()

    def resolved_database_url(self) -> str:
        """DATABASE_URL, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / SQLITE_FILE}"


def environment_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The config keys that the environment sets (empty values are ignored)."""
    return {key: environ[var] for var, key in ENV_OVERRIDES.items() if environ.get(var)}


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
    path = config.data_dir / JWT_SECRET_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    config.data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not end with different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret
