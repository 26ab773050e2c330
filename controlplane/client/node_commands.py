"""`encedeus nodes ls | add | drain | rm` (admin)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from controlplane.client.commands import add_command, client_for, out
from controlplane.client.render import age, field, short_id, table


def _node_id(client: Any, name_or_id: str) -> str:
    answer = client.call("GET", "/v1/nodes", query={"limit": 100})
    for node in answer.get("nodes", []):
        if name_or_id in (node.get("id"), node.get("name")):
            return str(node["id"])
    prefixed = [n for n in answer.get("nodes", []) if str(n.get("id", "")).startswith(name_or_id)]
    return str(prefixed[0]["id"]) if len(prefixed) == 1 else name_or_id


def list_nodes(args: argparse.Namespace) -> int:
    """A table of the nodes."""
    client = client_for(args)
    answer = client.call("GET", "/v1/nodes", query={"page": args.page, "limit": args.limit})
    table(
        answer.get("nodes", []),
        [
            ("ID", lambda r: short_id(r.get("id"))),
            ("NAME", field("name")),
            ("STATUS", field("status")),
            ("ADDRESS", lambda r: r.get("grpc_address") or r.get("address")),
            ("CPUS", field("fingerprint.cpu_count")),
            ("LAST SEEN", lambda r: age(r.get("last_seen"))),
        ],
        sys.stdout,
    )
    return 0


def add_node(args: argparse.Namespace) -> int:
    """Create a node and print its one-time join token."""
    client = client_for(args)
    body: dict[str, Any] = {"name": args.name}
    created = client.call("POST", "/v1/nodes", body)
    out(f"Node {created.get('name', args.name)} created ({created.get('id')})")
    out(f"Join token (shown once): {created.get('join_token')}")
    return 0


def drain(args: argparse.Namespace) -> int:
    """Stop placing work on a node and move its work away."""
    client = client_for(args)
    node_id = _node_id(client, args.node)
    answer = client.call("POST", f"/v1/nodes/{node_id}/drain")
    out((answer or {}).get("message") or f"node {node_id} draining")
    return 0


def remove(args: argparse.Namespace) -> int:
    """Delete a node."""
    client = client_for(args)
    node_id = _node_id(client, args.node)
    answer = client.call("DELETE", f"/v1/nodes/{node_id}")
    out((answer or {}).get("message") or f"node {node_id} deleted")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add `nodes` and its subcommands."""
    nodes = subparsers.add_parser("nodes", help="nodes (admin)")
    sub = nodes.add_subparsers(dest="nodes_command", required=True)
    parser = add_command(sub, "ls", list_nodes, "list nodes")
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--limit", type=int, default=50)
    parser = add_command(sub, "add", add_node, "create a node and print its join token")
    parser.add_argument("name")
    for name, command, help_text in (
        ("drain", drain, "move a node's replicas elsewhere and place nothing new on it"),
        ("rm", remove, "delete a node (its replicas' containers are removed first)"),
    ):
        parser = add_command(sub, name, command, help_text)
        parser.add_argument("node", help="node name or id")
