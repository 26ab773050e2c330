"""What `encedeus up` keeps between runs, in its data directory.

    <data_dir>/
      up.json               ports, the local node's id (and its join token until the
                            agent has enrolled), admin credentials (0600)
      controlplane/         the control plane's data dir (SQLite database, JWT secret)
      agent/                the agent's data dir (volumes, ...)
      agent/node.json       the identity the agent got by enrolling (written by the agent)
      agent.hcl             the generated agent configuration (0600: it may hold the token)
      agent.log             the agent's output

Everything here is blocking file I/O: call it from a thread.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.ports import pick_ports
from common.private_files import write_private_file

DEFAULT_AGENT_PORTS = {
    "grpc": 50051,
    "http": 8081,
    "sftp": 2022,
    "ingress": 8080,  # the local ingress: http://<app>.localhost:<port>/
    "ingress_https": 8443,
}


@dataclass(slots=True)
class AdminCredentials:
    """The admin account `up` created on its first run."""

    username: str
    email: str
    password: str


@dataclass(slots=True)
class UpState:
    """Everything `up` must find again on the next run.

    `join_token` is the local node's until its agent has enrolled (a first run that
    stopped before that reuses it). `node_secret` is only ever read: `up` before
    version 0.2 enrolled the node itself and kept the secret here; such a node keeps
    that identity.
    """

    agent_ports: dict[str, int] = field(default_factory=dict)
    node_id: str = ""
    join_token: str = ""
    node_secret: str = ""
    admin: AdminCredentials | None = None


def agent_node_file(data_dir: Path) -> Path:
    """Where the local agent keeps the identity it got by enrolling."""
    return data_dir / "agent" / "node.json"


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/encedeus`, or `~/.local/share/encedeus`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "encedeus"


def load_state(data_dir: Path) -> UpState:
    """The saved state (empty on the first run)."""
    try:
        raw = json.loads((data_dir / "up.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UpState()
    admin = raw.get("admin")
    return UpState(
        agent_ports={k: int(v) for k, v in raw.get("agent_ports", {}).items()},
        node_id=str(raw.get("node_id", "")),
        join_token=str(raw.get("join_token", "")),
        node_secret=str(raw.get("node_secret", "")),
        admin=AdminCredentials(**admin) if admin else None,
    )


def save_state(data_dir: Path, state: UpState) -> None:
    """Persist `state` (0600)."""
    write_private_file(data_dir / "up.json", json.dumps(asdict(state), indent=2) + "\n")


def duplicated_ports(ports: dict[str, int]) -> list[str]:
    """The names of ports that share their number with an earlier one."""
    seen: set[int] = set()
    duplicated = []
    for name, port in ports.items():
        if port in seen:
            duplicated.append(name)
        seen.add(port)
    return duplicated


def choose_agent_ports(saved: dict[str, int], *, prefer_defaults: bool) -> dict[str, int]:
    """The saved ports, else the defaults when free (and wanted), else free ones; no two
    ports are the same."""
    names = [name for name in DEFAULT_AGENT_PORTS if name not in saved]
    if not names:
        return dict(saved)
    # A state file of an older `up` lacks the newer listeners (the ingress): those get
    # ports of their own, distinct from the saved ones.
    chosen: dict[str, int] = {}
    taken = set(saved.values())
    for name in names:
        wanted = DEFAULT_AGENT_PORTS[name] if prefer_defaults else 0
        port = next(p for p in pick_ports([wanted, 0, 0]) if p not in taken)
        chosen[name] = port
        taken.add(port)
    return {**saved, **chosen}


def new_admin() -> AdminCredentials:
    """Credentials for the first admin: a fixed name, a strong random password."""
    password = secrets.token_urlsafe(18)
    while not password[0].isalnum():  # a leading "-" would read as an option to `login`
        password = secrets.token_urlsafe(18)
    return AdminCredentials("admin", "admin@example.com", password)


def _hcl_string(value: str) -> str:
    return json.dumps(value)


def agent_config_text(
    *,
    data_dir: Path,
    node_file: Path,
    controlplane_url: str,
    ports: dict[str, int],
    port_range: tuple[int, int],
    labels: dict[str, str],
    join_token: str = "",
    legacy_identity: tuple[str, str] | None = None,
    ui_origins: tuple[str, ...] = (),
    http_host: str = "127.0.0.1",
    http_public_url: str = "",
) -> str:
    """The `agent { }` block for the local agent (JSON strings are valid HCL strings).

    `ui_origins`: the web UI's origins, the only ones whose pages may open the console
    socket (`console.ws_allowed_origins`); none leaves the agent's default (any).
    `http_host`: where the agent's HTTP port (console, files) listens, and
    `http_public_url` how browsers reach it (empty: the agent's own default).

    With `join_token` the agent enrols itself and keeps its identity in `node_file`;
    `legacy_identity` (node id, secret) is the identity an older `up` enrolled with.
    """
    identity = ""
    if join_token:
        identity = f"  join_token = {_hcl_string(join_token)}\n"
    if legacy_identity is not None:
        identity = (
            f"  node_id = {_hcl_string(legacy_identity[0])}\n"
            f"  node_secret = {_hcl_string(legacy_identity[1])}\n"
        )
    label_lines = "".join(f"    {_hcl_string(k)} = {_hcl_string(v)}\n" for k, v in labels.items())
    hosts = {"grpc": "127.0.0.1", "http": http_host, "sftp": "127.0.0.1"}
    public = f"    public_url = {_hcl_string(http_public_url)}\n" if http_public_url else ""
    listen = "".join(
        f"  {name} {{\n    host = {_hcl_string(host)}\n    port = {ports[name]}\n"
        f"{public if name == 'http' else ''}  }}\n"
        for name, host in hosts.items()
    )
    # The ingress role: Caddy on loopback; containers publish on loopback too.
    ingress = (
        '  publish_address = "127.0.0.1"\n'
        "  ingress {\n    enabled = true\n"
        '    listen_host = "127.0.0.1"\n'
        f"    http_port = {ports['ingress']}\n"
        f"    https_port = {ports['ingress_https']}\n  }}\n"
    )
    console = ""
    if ui_origins:
        origins = ", ".join(_hcl_string(origin) for origin in ui_origins)
        console = f"  console {{\n    ws_allowed_origins = [{origins}]\n  }}\n"
    return (
        "# Generated by `encedeus up`; rewritten on every run.\n"
        "agent {\n"
        f"  data_dir = {_hcl_string(str(data_dir))}\n"
        f"  node_secret_file = {_hcl_string(str(node_file))}\n"
        f"{identity}"
        f"  controlplane_url = {_hcl_string(controlplane_url)}\n"
        "  watchdog = false\n"
        f"{listen}"
        f"{ingress}"
        f"{console}"
        f"  port_range {{\n    start = {port_range[0]}\n    end = {port_range[1]}\n  }}\n"
        f"  labels = {{\n{label_lines}  }}\n"
        "}\n"
    )
