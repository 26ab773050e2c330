"""`encedeus login | register | logout | whoami`.

Logging in exchanges the password for an access token once, creates an API key named
after this machine with it, and stores that key (0600): API keys do not expire, so the
client never has to juggle refresh tokens.
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from typing import Any

from controlplane.client.api import ApiClient, ClientError
from controlplane.client.commands import add_command, client_for, out
from controlplane.client.credentials import (
    StoredCredentials,
    credentials_path,
    load_credentials,
    save_credentials,
)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        if not (password := sys.stdin.readline().rstrip("\n")):
            raise ClientError("no password given: stdin was empty")
        return password
    if args.password:
        return str(args.password)
    if os.environ.get("ENCEDEUS_PASSWORD"):
        return os.environ["ENCEDEUS_PASSWORD"]
    if not sys.stdin.isatty():  # no terminal to ask on: getpass would fail or echo
        raise ClientError("no password given: use --password-stdin or ENCEDEUS_PASSWORD")
    return getpass.getpass("Password: ")


def _store_key_for(client: ApiClient, access_token: str, username: str) -> None:
    session = ApiClient(client.base_url, access_token)
    created = session.call(
        "POST",
        "/v1/api-keys",
        {"name": f"cli@{socket.gethostname()}"[:100], "description": "created by encedeus login"},
    )
    stored = StoredCredentials(client.base_url, created["key"], username, str(created["id"]))
    path = save_credentials(stored)
    out(f"Logged in to {client.base_url} as {username}; API key stored in {path}")


def login(args: argparse.Namespace) -> int:
    """Log in with a password (or store an API key) and remember the control plane."""
    client = client_for(args)
    if args.api_key:
        probe = ApiClient(client.base_url, args.api_key)
        profile = probe.call("GET", "/v1/user/profile")
        username = str(profile.get("username", ""))
        save_credentials(StoredCredentials(client.base_url, args.api_key, username))
        out(f"Logged in to {client.base_url} as {username} (API key stored)")
        return 0
    identity = args.user or input("E-mail or username: ").strip()
    body: dict[str, Any] = {"password": _password(args)}
    body["email" if "@" in identity else "username"] = identity
    answer = client.call("POST", "/v1/auth/login", body)
    _store_key_for(client, answer["access_token"], answer.get("user", {}).get("username", identity))
    return 0


def register_account(args: argparse.Namespace) -> int:
    """Create an account, then log in with it."""
    client = client_for(args)
    password = _password(args)
    answer = client.call(
        "POST",
        "/v1/auth/register",
        {
            "username": args.username,
            "email": args.email,
            "password": password,
            "confirm_password": password,
        },
    )
    _store_key_for(client, answer["access_token"], args.username)
    return 0


def logout(args: argparse.Namespace) -> int:
    """Revoke the API key `login` created and forget it (a key given to `login
    --api-key` is only forgotten: it may be in use elsewhere)."""
    stored = load_credentials()
    note = ""
    if stored.key_id and stored.token:
        try:
            ApiClient(stored.url, stored.token).call("DELETE", f"/v1/api-keys/{stored.key_id}")
        except ClientError as exc:
            note = (
                f"; its API key could not be revoked ({exc}): DELETE /v1/api-keys/{stored.key_id}"
            )
        else:
            note = "; its API key is revoked"
    save_credentials(StoredCredentials(stored.url, "", ""))
    out(f"Logged out ({credentials_path()} cleared{note})")
    return 0


def whoami(args: argparse.Namespace) -> int:
    """Show the account the stored credentials belong to."""
    client = client_for(args)
    if not client.token:
        raise ClientError("not logged in: run `encedeus login`")
    profile = client.call("GET", "/v1/user/profile")
    out(f"{profile.get('username')} <{profile.get('email')}> on {client.base_url}")
    return 0


def _password_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password", help="the password (default: $ENCEDEUS_PASSWORD or ask)")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )


def add_commands(subparsers: Any) -> None:
    """Add the session commands."""
    parser = add_command(subparsers, "login", login, "log in and store an API key")
    parser.add_argument("user", nargs="?", help="e-mail or username")
    parser.add_argument("--api-key", help="store this API key instead of logging in")
    _password_flags(parser)

    parser = add_command(subparsers, "register", register_account, "create an account and log in")
    parser.add_argument("username")
    parser.add_argument("email")
    _password_flags(parser)

    add_command(subparsers, "logout", logout, "forget the stored credentials")
    add_command(subparsers, "whoami", whoami, "show who is logged in")
