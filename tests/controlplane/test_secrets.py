"""Secrets at rest: sealing, refusing altered or misused values, the key's origin."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from controlplane.config import SecretFileEmpty, load_config, secret_in_data_dir
from controlplane.security.registry_credentials import RegistryCredentials
from controlplane.security.secrets import (
    SecretBox,
    SecretsKeyInvalid,
    SecretUnreadable,
    new_secrets_key,
    open_for_row,
    resolve_secrets_key,
    seal_for_row,
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


def test_a_registry_password_opens_only_as_a_registry_password() -> None:
    box = SecretBox(new_secrets_key())
    registry = RegistryCredentials(box)
    deployment = uuid.uuid4()
    sealed = registry.seal("hunter2-registry", deployment)
    assert "hunter2" not in sealed
    assert registry.open(sealed, deployment) == "hunter2-registry"
    with pytest.raises(SecretUnreadable):
        box.open(sealed, "forge_token")


@pytest.mark.parametrize("purpose", ["forge_token", "registry_password"])
def test_a_sealed_value_opens_only_for_its_own_row(purpose: str) -> None:
    """Copied into another row (another repo, another deployment) it does not open."""
    box = SecretBox(new_secrets_key())
    row, other = uuid.uuid4(), uuid.uuid4()
    sealed = seal_for_row(box, "s3cret", purpose, row)
    assert open_for_row(box, sealed, purpose, row) == "s3cret"
    with pytest.raises(SecretUnreadable):
        open_for_row(box, sealed, purpose, other)
    with pytest.raises(SecretUnreadable):
        box.open(sealed, purpose)  # nor as a value sealed before rows were bound


def test_a_value_sealed_before_rows_were_bound_still_opens() -> None:
    box = SecretBox(new_secrets_key())
    legacy = box.seal("s3cret", "registry_password")
    assert RegistryCredentials(box).open(legacy, uuid.uuid4()) == "s3cret"


@pytest.mark.parametrize("content", ["", "\n", "  \n"])
def test_an_empty_key_file_is_never_used_as_a_key(tmp_path: Path, content: str) -> None:
    """Left by a crash between creating and writing it (older versions): refused with
    a message that says what to do, never an empty key."""
    config = load_config(None, environ={}).model_copy(update={"data_dir": tmp_path})
    (tmp_path / "secrets_key").write_text(content)
    with pytest.raises(SecretFileEmpty, match="remove it to generate a new one"):
        resolve_secrets_key(config)


def test_the_key_file_appears_whole_and_a_racing_writer_keeps_the_first(tmp_path: Path) -> None:
    config = load_config(None, environ={}).model_copy(update={"data_dir": tmp_path})
    first = secret_in_data_dir(config, "k", lambda: "first")
    assert secret_in_data_dir(config, "k", lambda: "second") == "first" == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # nothing left aside
