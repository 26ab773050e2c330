"""`encedeus up`: a control plane on the embedded SQLite database plus a local agent,
enrolled automatically; prints the URL and the admin credentials; Ctrl-C stops both.

Arguments are declared in :mod:`controlplane.cli.server_commands`."""

from __future__ import annotations

import argparse
import asyncio
import errno
import shutil
import signal
import sys
from pathlib import Path

from common.logging import configure_logging
from controlplane.cli.common_args import config_or_exit
from controlplane.db.migrate import UnknownSchemaError
from controlplane.single_host.stack import UpError, UpOptions, run_up
from controlplane.single_host.state import default_data_dir


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
        advertise_host=args.advertise_host,
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
