"""`encedeus up`: a control plane on the embedded SQLite database plus a local agent,
enrolled automatically; prints the URL and the admin credentials; Ctrl-C stops both."""

from __future__ import annotations

import argparse
import asyncio
import errno
import shutil
import signal
import sys
from pathlib import Path

from common.logging import configure_logging
from controlplane.cli.common_args import add_config_argument, config_or_exit
from controlplane.db.migrate import UnknownSchemaError
from controlplane.single_host.stack import UpError, UpOptions, run_up
from controlplane.single_host.state import default_data_dir


def _port_range(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        low, high = int(start), int(end)
    except ValueError:
        raise argparse.ArgumentTypeError("use START-END, e.g. 30000-30999") from None
    if not sep or not 1 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError("use START-END, e.g. 30000-30999")
    return low, high


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("use KEY=VALUE")
    return key, value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `up` subcommand."""
    parser = subparsers.add_parser("up", help="run a control plane and a local agent here")
    # `--config` adds controlplane settings (webhooks, task limits...); the database is
    # always the embedded one in the data directory.
    add_config_argument(parser)
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="default: " + str(default_data_dir())
    )
    parser.add_argument("--host", default="127.0.0.1", help="control plane listen address")
    parser.add_argument("--port", type=int, default=3000, help="control plane port (0: any)")
    parser.add_argument("--port-range", type=_port_range, default=(30000, 30999),
                        help="host ports for published container ports (START-END)")  # fmt: skip
    parser.add_argument("--agent-label", type=_label, action="append", default=[],
                        metavar="KEY=VALUE", help="extra label on every container")  # fmt: skip
    parser.add_argument("--free-ports", action="store_true",
                        help="pick free agent ports instead of 50051/8081/2022")  # fmt: skip
    parser.add_argument("--log-level", default="warning")
    parser.set_defaults(run=run)


async def _main(options: UpOptions) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run_up(options, stop, sys.stdout)


def run(args: argparse.Namespace) -> int:
    """Run until Ctrl-C."""
    base = config_or_exit(args)
    configure_logging(args.log_level, json=False)
    options = UpOptions(
        data_dir=(args.data_dir or default_data_dir()).absolute(),
        host=args.host,
        port=args.port,
        port_range=args.port_range,
        agent_labels=dict(args.agent_label),
        prefer_default_ports=not args.free_ports,
        base_config=base,
        client_command=_client_command(),
    )
    try:
        return asyncio.run(_main(options))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            print(f"encedeus up: {exc}", file=sys.stderr)
        else:
            print(f"encedeus up: {exc.strerror or exc}: is another `encedeus up` running? "
                  "(--port and --data-dir choose others)", file=sys.stderr)  # fmt: skip
        return 1
    except (UpError, UnknownSchemaError) as exc:
        print(f"encedeus up: {exc}", file=sys.stderr)
        return 1


def _client_command() -> str:
    """`encedeus` when that is this program on the PATH, else this program's path
    (`make up` runs .venv/bin/encedeus, which a newcomer's shell does not find)."""
    this = Path(sys.argv[0]).absolute()
    found = shutil.which("encedeus")
    return "encedeus" if found and Path(found).absolute() == this else str(this)
