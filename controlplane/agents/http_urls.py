"""URLs of the agents' HTTP ports: what browsers are handed for the console, exec
and file transfers, and what the control plane itself calls to relay file
operations.

An agent reports where browsers reach its HTTP port in `NodeInfo.http_url` on every
connection (http or https, its advertised host, its public URL); before the first
report the address it enrolled with stands in (`host:port` from older agents means
plain http).
"""

from __future__ import annotations

import ssl

from controlplane.agents.pool import AgentPool


def reported_http_url(pool: AgentPool, node_id: str) -> str:
    """The URL the node's agent reported on this process's connection ("" before)."""
    observation = pool.observation(node_id)
    return observation.info.http_url if observation and observation.info else ""


def agent_http_base(reported: str, enrolled_address: str) -> str:
    """`scheme://host[:port][/prefix]` (no trailing slash) of a node's HTTP port:
    what its agent reported, else what it enrolled with; "" when neither says."""
    address = reported or enrolled_address
    if not address:
        return ""
    return (address if "://" in address else f"http://{address}").rstrip("/")


def socket_url(http_base: str, path: str) -> str:
    """The WebSocket URL of `path` on an HTTP port: wss:// for https, ws:// for http."""
    scheme, _, rest = http_base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def agent_client_tls(ca_pem: bytes | None) -> ssl.SSLContext:
    """How the control plane checks an agent's HTTPS certificate when it calls the
    agent itself: the system's CAs, plus `agent_ca_file` (the CA that also signs the
    agents' gRPC certificates) when set."""
    context = ssl.create_default_context()
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    return context
