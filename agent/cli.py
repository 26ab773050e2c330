"""`skyhook [--config PATH]`: the node agent daemon."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from agent.config import load_agent_config
from agent.daemon import serve
from agent.event_loop import run
from agent.runtime import ContainerRuntimeError
from common.config import ConfigError
from common.logging import configure_logging, get_logger


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="skyhook", description="Encedeus node agent")
    parser.add_argument("--config", type=Path, default=None, help="config.hcl (agent block)")
    return parser.parse_args(argv)


async def _main(config_path: Path | None) -> None:
    config = load_agent_config(config_path)
    configure_logging(config.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)


def root_cause(exc: BaseException) -> BaseException:
    """The error inside single-error groups (what a failing TaskGroup raises)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: list[str] | None = None) -> int:
    """Run the agent; exit 2 on a configuration error, 1 on any other failure."""
    args = parse_args(argv)
    configure_logging("info")
    log = get_logger("skyhook")
    try:
        run(_main(args.config))
    except Exception as exc:
        error = root_cause(exc)
        if isinstance(error, ConfigError):
            log.error("config_error", error=str(error))
            print(f"skyhook: {error}", file=sys.stderr)
            return 2
        if isinstance(error, ContainerRuntimeError):
            log.error("docker_unavailable", error=str(error))
        else:
            log.error("agent_failed", error=str(error), exc_info=error)
        print(f"skyhook: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
