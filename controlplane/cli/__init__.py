"""`encedeus`: the control plane server and the commands around it.

The client commands (`controlplane.client`) and the server commands
(:mod:`controlplane.cli.server_commands`) are declared with the standard library
only; a server command's module, and the server with it, is imported when that
command runs. Add a server command by declaring it in `server_commands` and writing
its `run(args) -> exit code` in a module of its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from controlplane import __version__
from controlplane.cli import server_commands
from controlplane.client import commands as client_commands


def build_parser() -> argparse.ArgumentParser:
    """The `encedeus` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="encedeus", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"encedeus {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    server_commands.register(subparsers)
    client_commands.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `encedeus` console script."""
    words, container_argv = client_commands.split_container_argv(
        sys.argv[1:] if argv is None else argv
    )
    parser = build_parser()
    args = parser.parse_args(words)
    if container_argv:
        if not hasattr(args, "container_argv"):
            parser.error(f"`{args.command}` takes no command after --")
        args.container_argv = container_argv
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
