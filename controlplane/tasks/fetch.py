"""Task input URLs under the control plane's configuration.

The fetching itself is the guarded outbound client's (:mod:`common.outbound`): every
connection's address is checked, redirects included. This module only says which
policy task URLs get and how its errors read in an API error's details.
"""

from __future__ import annotations

from typing import Any

from common.outbound import OutboundPolicy, OutboundRefused, OutboundTooLarge
from controlplane.config import ControlPlaneConfig


def task_fetch_policy(config: ControlPlaneConfig) -> OutboundPolicy:
    """How task URLs may be fetched under `config`."""
    return OutboundPolicy(
        allow_private=config.task_fetch_allow_private,
        allowed_networks=config.outbound_allowed_networks,
        max_bytes=config.task_fetch_max_bytes,
        timeout_seconds=config.task_fetch_timeout_seconds,
    )


def describe(exc: Exception) -> dict[str, Any]:
    """A short machine-readable form of a fetch error for API error details."""
    kind = "failed"
    if isinstance(exc, OutboundRefused):
        kind = "refused"
    elif isinstance(exc, OutboundTooLarge):
        kind = "too_large"
    return {"reason": kind, "message": str(exc)}
