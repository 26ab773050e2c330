"""Images made from Debian alone, for tests that need more than busybox: the base
image `scripts/agent-base-image.sh` makes (debootstrap once per machine, cached) and
the agent's own image built on it from `Dockerfile.agent`."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = os.environ.get("ENCEDEUS_AGENT_BASE_IMAGE", "encedeus/debian-base:bookworm")


def debian_base_image() -> str:
    """The Debian base image (bookworm minbase with python3), made when missing
    (blocking: call from a thread or a synchronous fixture)."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "agent-base-image.sh"), BASE_IMAGE],
        check=True,
        timeout=900,
    )
    return BASE_IMAGE


@functools.cache
def agent_image() -> str:
    """Skyhook's image from Dockerfile.agent, built when this checkout's content hash
    has none yet (scripts/build-agent-image.sh; blocking)."""
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-agent-image.sh")],
        check=True,
        timeout=900,
        capture_output=True,
        text=True,
    )
    return built.stdout.strip().splitlines()[-1]
