"""`encedeus controlplane`: run the control plane until SIGINT/SIGTERM.

Arguments are declared in :mod:`controlplane.cli.server_commands`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal

from aiohttp import web

from common.logging import configure_logging, get_logger
from controlplane.app import MAX_REQUEST_LINE, build_app
from controlplane.cli.common_args import config_or_exit
from controlplane.config import ControlPlaneConfig, unused_variables
from controlplane.db.migrate import UnknownSchemaError
from controlplane.leadership.serve_lock import DatabaseInUse, ServeLock, sqlite_file
from controlplane.leadership.shared_secrets import SharedSecretsRefused

log = get_logger(__name__)


async def serve(config: ControlPlaneConfig, stop: asyncio.Event) -> None:
    """Start the app on the configured address, run until `stop` is set, shut down."""
    runner = web.AppRunner(
        build_app(config),
        shutdown_timeout=config.shutdown_timeout_seconds,
        access_log=None,
        max_line_size=MAX_REQUEST_LINE,
    )
    await runner.setup()
    # Everything loaded so far lives as long as the process: keep it out of the
    # cyclic GC's scans, whose full passes would otherwise stall requests (p99).
    gc.collect()
    gc.freeze()
    try:
        site = web.TCPSite(runner, config.listen_address, config.port)
        await site.start()
        addresses = [f"{host}:{port}" for host, port, *_ in runner.addresses]
        log.info("control_plane_listening", addresses=addresses)
        await stop.wait()
        log.info("control_plane_stopping")
    finally:
        await runner.cleanup()


async def _main(config: ControlPlaneConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    database_file = sqlite_file(config.resolved_database_url())
    lock = None if database_file is None else ServeLock(database_file)
    if lock is not None:
        await asyncio.to_thread(config.data_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(lock.acquire)
    try:
        await serve(config, stop)
    finally:
        if lock is not None:
            lock.release()


EXIT_UNKNOWN_SCHEMA = 3
EXIT_REFUSED = 2


def run(args: argparse.Namespace) -> int:
    """Serve until a signal; exit 2 on bad configuration (including secrets that differ
    from the database's, or a SQLite database another server holds), 3 when the
    database schema is newer than the code (systemd must not restart either)."""
    config = config_or_exit(args)
    configure_logging(config.log_level)
    for name, hint in unused_variables(os.environ).items():
        log.warning("environment_variable_unused", variable=name, hint=hint)
    try:
        asyncio.run(_main(config))
    except UnknownSchemaError as exc:
        log.error("refusing_to_start", reason=str(exc))
        return EXIT_UNKNOWN_SCHEMA
    except (SharedSecretsRefused, DatabaseInUse) as exc:
        log.error("refusing_to_start", reason=str(exc))
        return EXIT_REFUSED
    return 0
