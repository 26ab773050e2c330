"""Where the client keeps the control plane URL and the API key it logged in with.

`~/.config/encedeus/credentials` (or `$XDG_CONFIG_HOME/encedeus/credentials`, or the
path in `$ENCEDEUS_CREDENTIALS`): a JSON object, written atomically with mode 0600.
`$ENCEDEUS_URL` and `$ENCEDEUS_TOKEN` override what is stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from common.private_files import write_private_file

DEFAULT_URL = "http://127.0.0.1:3000"


@dataclass(frozen=True, slots=True)
class StoredCredentials:
    """What `encedeus login` remembers."""

    url: str = DEFAULT_URL
    token: str = ""
    username: str = ""
    key_id: str = ""  # the API key `login` created (so `logout` can revoke it)


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    """The credentials file for this user."""
    env = os.environ if environ is None else environ
    if env.get("ENCEDEUS_CREDENTIALS"):
        return Path(env["ENCEDEUS_CREDENTIALS"])
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else None
    if base is None:
        base = Path(env.get("HOME") or Path.home()) / ".config"
    return base / "encedeus" / "credentials"


def load_credentials(environ: Mapping[str, str] | None = None) -> StoredCredentials:
    """The stored credentials with the environment's overrides (defaults when none)."""
    env = os.environ if environ is None else environ
    stored = StoredCredentials()
    path = credentials_path(env)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stored = StoredCredentials(
            url=str(data.get("url") or DEFAULT_URL),
            token=str(data.get("token") or ""),
            username=str(data.get("username") or ""),
            key_id=str(data.get("key_id") or ""),
        )
    except (OSError, ValueError, AttributeError):
        pass
    return StoredCredentials(
        url=env.get("ENCEDEUS_URL") or stored.url,
        token=env.get("ENCEDEUS_TOKEN") or stored.token,
        username=stored.username,
        key_id="" if env.get("ENCEDEUS_TOKEN") else stored.key_id,
    )


def save_credentials(
    credentials: StoredCredentials, environ: Mapping[str, str] | None = None
) -> Path:
    """Store `credentials` (0600) and return the file's path."""
    path = credentials_path(environ)
    write_private_file(path, json.dumps(asdict(credentials), indent=2) + "\n")
    return path
