"""Where `encedeus up` is reached: from this machine (the agent, the CLI) and by
browsers on others (`--host 0.0.0.0` must not hand them 127.0.0.1), and the web UI's
origins the local agent accepts."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from common.host_address import is_wildcard, url_host


def ui_origins(url: str, *more: str) -> tuple[str, ...]:
    """The origins the web UI served at `url` (and at `more` URLs) is loaded from:
    each one's own and, for 127.0.0.1, the same port on `localhost`."""
    origins: list[str] = []
    for each in (url, *more):
        parsed = urlsplit(each)
        found = [f"{parsed.scheme}://{parsed.netloc}"]
        if parsed.hostname == "127.0.0.1":
            found.append(f"{parsed.scheme}://localhost:{parsed.port}")
        origins.extend(origin for origin in found if origin not in origins)
    return tuple(origins)


def public_host(host: str, advertise_host: str, primary: str | None) -> str:
    """The host browsers on other machines use: `advertise_host` when given; for a
    wildcard listen the host's primary address (`primary`; loopback when it has
    none); else the listen address itself."""
    if advertise_host:
        return advertise_host
    if is_wildcard(host):
        return primary or "127.0.0.1"
    return host


@dataclass(frozen=True, slots=True)
class UpAddresses:
    """Where the stack is reached: `local_url` from this machine (the agent, the CLI),
    `public_url` by browsers (the same unless `up` listens beyond loopback), and the
    agent's HTTP port: its listen host and the URL browsers are handed for it."""

    local_url: str
    public_url: str
    agent_http_host: str
    agent_http_url: str


def up_addresses(
    host: str, advertise_host: str, ports: tuple[int, int], primary: str | None
) -> UpAddresses:
    """The addresses of a stack whose control plane listens on `host` with `ports`
    (the control plane's, the agent's HTTP port); `primary` is this host's primary
    address (common.host_address)."""
    port, agent_http_port = ports
    local_host = "127.0.0.1" if is_wildcard(host) else host
    public = public_host(host, advertise_host, primary)
    agent_url = "" if public == local_host else f"http://{url_host(public)}:{agent_http_port}"
    return UpAddresses(
        local_url=f"http://{url_host(local_host)}:{port}",
        public_url=f"http://{url_host(public)}:{port}",
        # The agent's browser-facing port listens where the control plane does.
        agent_http_host=host or "0.0.0.0",
        agent_http_url=agent_url,
    )
