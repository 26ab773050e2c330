"""`encedeus`: the control plane server and the commands around it.

Each subcommand lives in its own module with `register(subparsers)`, which adds
its parser and sets `run=<function(args) -> exit code>`. Add a command by writing
the module and listing it in COMMANDS.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from types import ModuleType

from controlplane import __version__
from controlplane.cli import serve, up, user
from controlplane.client import commands as client_commands

COMMANDS: list[ModuleType] = [serve, user, up, client_commands]


def build_parser() -> argparse.ArgumentParser:
    """The `encedeus` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="encedeus", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"encedeus {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `encedeus` console script."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
