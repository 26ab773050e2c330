"""Loading steps that several server subcommands of `encedeus` share."""

from __future__ import annotations

import argparse
import sys

from common.config import ConfigError
from controlplane.config import ControlPlaneConfig, load_config


def config_or_exit(args: argparse.Namespace) -> ControlPlaneConfig:
    """The configuration named by --config and the environment; exit 2 on errors."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"encedeus: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
