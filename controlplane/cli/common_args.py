"""Arguments and loading steps that several `encedeus` subcommands share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.config import ConfigError
from controlplane.config import ControlPlaneConfig, load_config


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """`--config PATH` (the controlplane block of an HCL file)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="config.hcl to read the controlplane block from (default: built-in defaults)",
    )


def config_or_exit(args: argparse.Namespace) -> ControlPlaneConfig:
    """The configuration named by --config and the environment; exit 2 on errors."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"encedeus: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
