"""`encedeus domains ls | add | verify | rm APP [DOMAIN]`: custom domains of an app."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from controlplane.client.commands import add_command, client_for, out, resolve_deployment
from controlplane.client.render import age, field, table


def _path(args: argparse.Namespace, client: Any, domain: str = "") -> str:
    deployment = resolve_deployment(client, args.app)
    path = f"/v1/deployments/{deployment['id']}/domains"
    return f"{path}/{quote(domain, safe='')}" if domain else path


def _how_to_verify(domain: dict[str, Any]) -> None:
    proof = domain.get("verification") or {}
    out(f"{domain.get('domain')}: {domain.get('state')}")
    if domain.get("state") != "verified":
        out("Prove you control it with either:")
        out(f"  a DNS TXT record  {proof.get('txt_name')}  =  {proof.get('txt_value')}")
        out(f"  or, once its DNS points at the ingress, HTTP at {proof.get('http_path')}")
        out("then run: encedeus domains verify APP DOMAIN")


def list_domains(args: argparse.Namespace) -> int:
    """A table of the app's domains."""
    client = client_for(args)
    answer = client.call("GET", _path(args, client))
    table(
        answer.get("domains", []),
        [
            ("DOMAIN", field("domain")),
            ("STATE", field("state")),
            ("TXT VALUE", field("verification.txt_value")),
            ("ADDED", lambda r: age(r.get("created_at"))),
            ("LAST ERROR", field("last_error")),
        ],
        sys.stdout,
    )
    return 0


def add_domain(args: argparse.Namespace) -> int:
    """Claim a domain and print how to verify it."""
    client = client_for(args)
    _how_to_verify(client.call("POST", _path(args, client), {"domain": args.domain}))
    return 0


def verify_domain(args: argparse.Namespace) -> int:
    """Check the DNS TXT record (or HTTP token) now."""
    client = client_for(args)
    _how_to_verify(client.call("POST", _path(args, client, args.domain) + "/verify", {}))
    return 0


def remove_domain(args: argparse.Namespace) -> int:
    """Remove the domain; the ingress stops routing it at once."""
    client = client_for(args)
    answer = client.call("DELETE", _path(args, client, args.domain))
    out((answer or {}).get("message") or "domain removed")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add `domains` and its subcommands."""
    domains = subparsers.add_parser("domains", help="custom domains of an app")
    sub = domains.add_subparsers(dest="domains_command", required=True)
    parser = add_command(sub, "ls", list_domains, "list an app's domains")
    parser.add_argument("app", help="app name or id")
    for name, command, help_text in (
        ("add", add_domain, "claim a domain for an app"),
        ("verify", verify_domain, "verify a claimed domain"),
        ("rm", remove_domain, "remove a domain"),
    ):
        parser = add_command(sub, name, command, help_text)
        parser.add_argument("app", help="app name or id")
        parser.add_argument("domain")
