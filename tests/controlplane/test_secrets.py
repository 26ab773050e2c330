"""Secrets at rest: one key (configured or generated once, 0600) seals and opens."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from controlplane.config import ControlPlaneConfig
from controlplane.security.secrets import (
    SecretBox,
    SecretOpenFailed,
    load_or_create_secrets_key,
)


def test_sealed_values_open_only_with_their_key() -> None:
    box = SecretBox(Fernet.generate_key())
    sealed = box.seal("hunter2-registry")
    assert "hunter2" not in sealed
    assert box.open(sealed) == "hunter2-registry"
    with pytest.raises(SecretOpenFailed):
        SecretBox(Fernet.generate_key()).open(sealed)
    with pytest.raises(SecretOpenFailed):
        box.open(sealed[:-4] + "AAAA")


def test_the_generated_key_is_kept_private_and_reused(tmp_path: Path) -> None:
    config = ControlPlaneConfig(data_dir=tmp_path / "data")
    key = load_or_create_secrets_key(config)
    path = tmp_path / "data" / "secrets_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secrets_key(config) == key
    configured = Fernet.generate_key().decode()
    assert (
        load_or_create_secrets_key(
            ControlPlaneConfig(data_dir=tmp_path / "data", secrets_key=configured)
        )
        == configured.encode()
    )
