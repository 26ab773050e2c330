"""The server side's `encedeus` subcommands, declared without loading the server.

`controlplane`, `user create` and `up` add their arguments here with the standard
library only; each command's module (`serve`, `user`, `up` in this package) and with
it the server's dependencies are imported when that command runs, so the client
commands start light and work where only the client is installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR_HELP = "$XDG_DATA_HOME/encedeus, else ~/.local/share/encedeus"


class DeferredCommand:
    """`run` of a command whose module is imported on the first call; a missing
    third-party package (`extra` not installed) is one line on stderr and exit code 2."""

    def __init__(self, module: str, function: str = "run", extra: str = "server") -> None:
        self.module = module
        self.function = function
        self.extra = extra

    def __call__(self, args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if not missing or missing in ("controlplane", "common"):
                raise
            print(
                f"encedeus: this command needs the control plane's dependencies "
                f"({missing} is missing): pip install 'encedeus[{self.extra}]'",
                file=sys.stderr,
            )
            return 2
        code: int = getattr(module, self.function)(args)
        return code


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """`--config PATH` (the controlplane block of an HCL file)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="config.hcl to read the controlplane block from (default: built-in defaults)",
    )


def port_range(text: str) -> tuple[int, int]:
    """`START-END` as a pair of ports."""
    start, sep, end = text.partition("-")
    try:
        low, high = int(start), int(end)
    except ValueError:
        raise argparse.ArgumentTypeError("use START-END, e.g. 30000-30999") from None
    if not sep or not 1 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError("use START-END, e.g. 30000-30999")
    return low, high


def label(text: str) -> tuple[str, str]:
    """`KEY=VALUE` as a pair."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("use KEY=VALUE")
    return key, value


def _add_controlplane(subparsers: Any) -> None:
    parser = subparsers.add_parser("controlplane", help="run the control plane server")
    add_config_argument(parser)
    parser.set_defaults(run=DeferredCommand("controlplane.cli.serve"))


def _add_user(subparsers: Any) -> None:
    parser = subparsers.add_parser("user", help="manage accounts")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create an account")
    add_config_argument(create)
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--admin", action="store_true", help="make the account an admin")
    create.add_argument(
        "--password",
        help="the password (default: prompt on a terminal, else one line from stdin)",
    )
    create.set_defaults(run=DeferredCommand("controlplane.cli.user", "run_create"))


def _add_up(subparsers: Any) -> None:
    parser = subparsers.add_parser("up", help="run a control plane and a local agent here")
    # `--config` adds controlplane settings (webhooks, task limits...); the database is
    # always the embedded one in the data directory.
    add_config_argument(parser)
    parser.add_argument(
        "--data-dir", type=Path, default=None, help=f"default: {DEFAULT_DATA_DIR_HELP}"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="listen address of the control plane and the agent's browser "
        "port (0.0.0.0: every address, for browsers on other machines)",
    )
    parser.add_argument(
        "--advertise-host",
        default="",
        metavar="NAME",
        help="the name or address other machines reach this one by "
        "(default with --host 0.0.0.0: this host's primary address)",
    )
    parser.add_argument("--port", type=int, default=3000, help="control plane port (0: any)")
    parser.add_argument("--port-range", type=port_range, default=(30000, 30999),
                        help="host ports for published container ports (START-END)")  # fmt: skip
    parser.add_argument("--agent-label", type=label, action="append", default=[],
                        metavar="KEY=VALUE", help="extra label on every container")  # fmt: skip
    parser.add_argument("--free-ports", action="store_true",
                        help="pick free agent ports instead of 50051/8081/2022")  # fmt: skip
    parser.add_argument("--log-level", default="warning")
    # `up` also starts `skyhook`: it needs the agent's dependencies too.
    parser.set_defaults(run=DeferredCommand("controlplane.cli.up", extra="all"))


def register(subparsers: Any) -> None:
    """Add `controlplane`, `user create` and `up` to the `encedeus` parser."""
    _add_controlplane(subparsers)
    _add_user(subparsers)
    _add_up(subparsers)
