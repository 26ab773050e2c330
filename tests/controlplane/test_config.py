"""The controlplane block, environment overrides and the generated JWT secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError
from controlplane.config import load_config, resolve_jwt_secret, unused_variables
from controlplane.mail import sender_of

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config.port == 3000
    assert config.registration == "open"
    assert config.resolved_database_url().startswith("sqlite+aiosqlite:///")


def test_the_repository_config_hcl_loads() -> None:
    config = load_config(REPO_ROOT / "config.hcl", environ={})
    assert config.port == 3000


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.hcl"
    path.write_text('controlplane {\n  port = 4000\n  smtp_host = "file"\n}\n')
    env = {
        "PORT": "5000",
        "DATABASE_URL": "postgresql+asyncpg://u:p@h/db",
        "JWT_SECRET": "s" * 32,
        "SMTP_HOST": "mail.example.com",
        "SMTP_PORT": "2525",
        "SMTP_USERNAME": "user",
        "SMTP_PASSWORD": "pw",
        "EMAIL_FROM": "cp@example.com",
        "WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "DOMAIN_SUFFIX": "apps.example.com",
        "SMTP_TLS": "ignored: not an override",
    }
    config = load_config(path, environ=env)
    assert config.port == 5000
    assert config.resolved_database_url() == "postgresql+asyncpg://u:p@h/db"
    assert (config.smtp_host, config.smtp_port) == ("mail.example.com", 2525)
    assert (config.smtp_username, config.smtp_password) == ("user", "pw")
    assert config.email_from == "cp@example.com"
    assert config.webhook_url == "http://127.0.0.1:9/hook"
    assert config.domain_suffix == "apps.example.com"
    assert config.jwt_secret == "s" * 32


def test_errors_name_the_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.hcl"
    path.write_text('controlplane {\n  port = 1\n  registration = "maybe"\n}\n')
    with pytest.raises(ConfigError, match=r"registration.*line 3"):
        load_config(path, environ={})
    path.write_text("controlplane {\n  colour = 1\n}\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_config(path, environ={})


def test_generated_jwt_secret_is_kept_private_and_stable(tmp_path: Path) -> None:
    config = load_config(None, environ={}).model_copy(update={"data_dir": tmp_path / "d"})
    first = resolve_jwt_secret(config)
    assert resolve_jwt_secret(config) == first
    assert len(first) >= 32
    assert (tmp_path / "d" / "jwt_secret").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgres://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_database_url_as_operators_write_it(given: str, used: str) -> None:
    """Seed 004's `postgresql://` (and libpq's `postgres://`, `sslmode`) select the
    asyncpg driver the engine needs."""
    config = load_config(None, environ={"DATABASE_URL": given})
    assert config.resolved_database_url() == used


def test_seed_004_mail_variables(tmp_path: Path) -> None:
    """AWS_SES_* name the SMTP settings (SMTP_* win when both are set);
    EMAIL_FROM_NAME makes the From header's display name."""
    ses = {
        "AWS_SES_SMTP_HOST": "email-smtp.example.com",
        "AWS_SES_SMTP_PORT": "2587",
        "AWS_SES_USERNAME": "AKIA",
        "AWS_SES_PASSWORD": "ses-pw",
        "EMAIL_FROM": "noreply@example.com",
        "EMAIL_FROM_NAME": "Container Engine",
    }
    config = load_config(None, environ=ses)
    assert (config.smtp_host, config.smtp_port) == ("email-smtp.example.com", 2587)
    assert (config.smtp_username, config.smtp_password) == ("AKIA", "ses-pw")
    assert sender_of(config) == "Container Engine <noreply@example.com>"
    both = load_config(None, environ={**ses, "SMTP_HOST": "mail.example.com"})
    assert both.smtp_host == "mail.example.com"
    assert sender_of(load_config(None, environ={})) == "encedeus@localhost"


def test_seed_variables_that_are_not_read_are_named() -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6379", "KUBECONFIG_PATH": "", "PORT": "1"}
    unused = unused_variables(env)
    assert list(unused) == ["REDIS_URL"]
    assert "DATABASE_URL" in unused["REDIS_URL"]


@pytest.mark.parametrize(
    "value", ["ftp://panel.example.com", "panel.example.com", "https://x/#a", "https://a b"]
)
def test_public_url_must_be_an_http_address(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.hcl"
    path.write_text(f'controlplane {{\n  public_url = "{value}"\n}}\n')
    with pytest.raises(ConfigError, match="public_url"):
        load_config(path, environ={})
    path.write_text('controlplane {\n  public_url = "https://panel.example.com"\n}\n')
    assert load_config(path, environ={}).public_url == "https://panel.example.com"
