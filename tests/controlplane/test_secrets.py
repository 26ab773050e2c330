"""Secrets at rest: sealing, refusing altered or misused values, the key's origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import load_config
from controlplane.security.secrets import (
    SecretBox,
    SecretsKeyInvalid,
    SecretUnreadable,
    new_secrets_key,
    resolve_secrets_key,
)


def test_a_sealed_secret_opens_only_with_its_key_and_purpose() -> None:
    box = SecretBox(new_secrets_key())
    sealed = box.seal("ghp_secret-token", "forge_token")
    assert "ghp_secret-token" not in sealed
    assert box.seal("ghp_secret-token", "forge_token") != sealed  # fresh nonce each time
    assert box.open(sealed, "forge_token") == "ghp_secret-token"
    with pytest.raises(SecretUnreadable):
        box.open(sealed, "registry_password")
    with pytest.raises(SecretUnreadable):
        SecretBox(new_secrets_key()).open(sealed, "forge_token")
    version, nonce, body = sealed.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for altered in (f"{version}.{nonce}.{flipped}", "v9." + sealed[3:], "garbage", ""):
        with pytest.raises(SecretUnreadable):
            box.open(altered, "forge_token")


def test_malformed_keys_are_refused() -> None:
    for key in ("short", "not base64 !!", new_secrets_key() + "AAAA"):
        with pytest.raises(SecretsKeyInvalid):
            SecretBox(key)
    with pytest.raises(RuntimeError):
        SecretBox().seal("x", "forge_token")


def test_key_from_config_environment_or_generated_into_the_data_dir(tmp_path: Path) -> None:
    configured = new_secrets_key()
    env = load_config(None, environ={"ENCEDEUS_SECRETS_KEY": configured})
    assert resolve_secrets_key(env) == configured
    config = load_config(None, environ={}).model_copy(update={"data_dir": tmp_path / "d"})
    generated = resolve_secrets_key(config)
    assert resolve_secrets_key(config) == generated
    assert (tmp_path / "d" / "secrets_key").stat().st_mode & 0o777 == 0o600
    box = SecretBox(generated)
    assert SecretBox(resolve_secrets_key(config)).open(box.seal("x", "p"), "p") == "x"
