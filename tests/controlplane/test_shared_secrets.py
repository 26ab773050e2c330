"""Secrets every control plane of a PostgreSQL database must share: configured, and
the same as those the database was set up with (else refused, naming which)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.leadership.shared_secrets import SharedSecretsRefused
from controlplane.security.secrets import new_secrets_key
from tests.controlplane.conftest import ConfigFactory, start_client

POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@POSTGRES_ONLY
@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"jwt_secret": "another-secret-0123456789abcdef"}, "jwt_secret differ"),
        ({"secrets_key": new_secrets_key()}, "secrets_key differ"),
        (
            {"jwt_secret": "another-secret-0123456789abcdef", "secrets_key": new_secrets_key()},
            "jwt_secret and secrets_key differ",
        ),
    ],
)
async def test_a_control_plane_with_other_secrets_refuses_to_start(
    make_config: ConfigFactory, overrides: dict[str, str], named: str, tmp_path: Path
) -> None:
    first = await start_client(make_config())
    try:
        with pytest.raises(SharedSecretsRefused, match=named):
            await start_client(make_config(data_dir=tmp_path / "b", **overrides))
    finally:
        await first.close()
    # The same secrets start (the fingerprints were stored by the first).
    again = await start_client(make_config())
    await again.close()


@POSTGRES_ONLY
@pytest.mark.parametrize(
    ("missing", "variable"), [("jwt_secret", "JWT_SECRET"), ("secrets_key", "ENCEDEUS_SECRETS_KEY")]
)
async def test_postgresql_refuses_secrets_generated_into_the_data_dir(
    make_config: ConfigFactory, missing: str, variable: str
) -> None:
    with pytest.raises(SharedSecretsRefused, match=f"set {missing} \\({variable}\\)"):
        await start_client(make_config(**{missing: ""}))


async def test_sqlite_keeps_generated_secrets(
    make_config: ConfigFactory, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    client = await start_client(make_config(jwt_secret="", secrets_key=""))
    await client.close()
