"""`encedeus user create`: make an account (e.g. the first admin) from a shell.

Arguments are declared in :mod:`controlplane.cli.server_commands`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from pydantic import BaseModel, ValidationError

from controlplane.accounts import create_user
from controlplane.api.errors import ApiError
from controlplane.api.schemas import Email, Password, Username
from controlplane.cli.common_args import config_or_exit
from controlplane.config import ControlPlaneConfig, prepare_data_dir
from controlplane.db.engine import Database, create_engine
from controlplane.db.migrate import UnknownSchemaError, upgrade_database


class NewAccount(BaseModel):
    """The same rules as POST /v1/auth/register."""

    username: Username
    email: Email
    password: Password


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise SystemExit("encedeus: passwords do not match")
    return first


async def _create(config: ControlPlaneConfig, account: NewAccount, admin: bool) -> str:
    await asyncio.to_thread(prepare_data_dir, config)
    url = config.resolved_database_url()
    await upgrade_database(url)
    db = Database(create_engine(url))
    try:
        user = await create_user(
            db,
            username=account.username,
            email=account.email,
            password=account.password,
            quota=config.default_quota,
            admin=admin,
        )
    finally:
        await db.close()
    return str(user.id)


def run_create(args: argparse.Namespace) -> int:
    """Validate, create, print the new account's id."""
    config = config_or_exit(args)
    password = args.password if args.password is not None else _read_password()
    try:
        account = NewAccount(username=args.username, email=args.email, password=password)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            print(f"encedeus: {error['loc'][0]}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        user_id = asyncio.run(_create(config, account, args.admin))
    except (ApiError, UnknownSchemaError) as exc:
        print(f"encedeus: {exc}", file=sys.stderr)
        return 1
    role = "admin" if args.admin else "user"
    print(f"created {role} {account.username} ({user_id})")
    return 0
