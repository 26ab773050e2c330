"""Typed keys under which the application keeps its shared components.

`build_app` fills them; handlers reach them through the accessors in
:mod:`controlplane.api.context`. Add keys for new components here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from controlplane.agents import AgentPool
    from controlplane.api.authentication import Authenticator
    from controlplane.api.endpoints import ApiRoutes
    from controlplane.api.metrics import ApiMetrics
    from controlplane.config import ControlPlaneConfig
    from controlplane.db.engine import Database
    from controlplane.mail import MailOutbox
    from controlplane.reconciler.loop import Reconciler
    from controlplane.security.credentials import ServerKeys
    from controlplane.security.rate_limit import SlidingWindowLimiter
    from controlplane.security.registry_credentials import RegistryCredentials

CONFIG: web.AppKey[ControlPlaneConfig] = web.AppKey("config")
ROUTES: web.AppKey[ApiRoutes] = web.AppKey("routes")
METRICS: web.AppKey[ApiMetrics] = web.AppKey("metrics")
RATE_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey("rate_limiter")
DATABASE: web.AppKey[Database] = web.AppKey("database")
SERVER_KEYS: web.AppKey[ServerKeys] = web.AppKey("server_keys")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
MAIL_OUTBOX: web.AppKey[MailOutbox] = web.AppKey("mail_outbox")
AGENT_POOL: web.AppKey[AgentPool] = web.AppKey("agent_pool")
RECONCILER: web.AppKey[Reconciler] = web.AppKey("reconciler")
REGISTRY_SECRETS: web.AppKey[RegistryCredentials] = web.AppKey("registry_secrets")
