"""Typed keys under which the application keeps its shared components.

The rule (docs/architecture.md, "App keys"): every key that more than one module uses
is declared here, whoever fills it (`build_app` or a component's `wiring.py`), so a
handler reaches a component without importing the code that builds and runs it. A
key that one module both sets and reads stays private to it (`_NAME`).
Handlers use the accessors in :mod:`controlplane.api.context` where there is one.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from common.login_throttle import LoginThrottle
    from controlplane.agents import AgentPool
    from controlplane.api.authentication import Authenticator
    from controlplane.api.endpoints import ApiRoutes
    from controlplane.api.image_checks import ImageChecks
    from controlplane.api.metrics import ApiMetrics
    from controlplane.backups.runner import BackupRunner
    from controlplane.config import ControlPlaneConfig
    from controlplane.db.engine import Database
    from controlplane.db.notify import Notifier
    from controlplane.events.bus import EventBus
    from controlplane.events.feed import EventFeed
    from controlplane.events.mail_notifications import MailNotifier
    from controlplane.events.outbox import WebhookOutbox
    from controlplane.events.owner_webhooks import DatabaseOwnerEndpoints
    from controlplane.events.webhooks import WebhookDispatcher
    from controlplane.ingress.publisher import IngressPublisher
    from controlplane.leadership import Leadership
    from controlplane.mail import MailOutbox
    from controlplane.reconciler.loop import Reconciler
    from controlplane.repos.forge import ForgeClient
    from controlplane.security.credentials import ServerKeys
    from controlplane.security.rate_limit import SlidingWindowLimiter
    from controlplane.security.registry_credentials import RegistryCredentials
    from controlplane.security.secrets import SecretBox
    from controlplane.tasks.queue import TaskQueue
    from controlplane.tasks.runner import TaskRunner
    from controlplane.volumes.moves import SlotMover

CONFIG: web.AppKey[ControlPlaneConfig] = web.AppKey("config")
ROUTES: web.AppKey[ApiRoutes] = web.AppKey("routes")
METRICS: web.AppKey[ApiMetrics] = web.AppKey("metrics")
RATE_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey("rate_limiter")
#: Password attempts (HTTP login and SFTP), reserved before verification.
LOGIN_THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("login_throttle")
DATABASE: web.AppKey[Database] = web.AppKey("database")
SERVER_KEYS: web.AppKey[ServerKeys] = web.AppKey("server_keys")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
MAIL_OUTBOX: web.AppKey[MailOutbox] = web.AppKey("mail_outbox")
AGENT_POOL: web.AppKey[AgentPool] = web.AppKey("agent_pool")
#: How the control plane checks agents' HTTPS certificates (file relays).
AGENT_HTTP_TLS: web.AppKey[ssl.SSLContext] = web.AppKey("agent_http_tls")
RECONCILER: web.AppKey[Reconciler] = web.AppKey("reconciler")
SLOT_MOVER: web.AppKey[SlotMover] = web.AppKey("slot_mover")
INGRESS: web.AppKey[IngressPublisher] = web.AppKey("ingress")
EVENT_BUS: web.AppKey[EventBus] = web.AppKey("event_bus")
EVENT_FEED: web.AppKey[EventFeed] = web.AppKey("event_feed")
WEBHOOKS: web.AppKey[WebhookDispatcher] = web.AppKey("webhooks")
WEBHOOK_OUTBOX: web.AppKey[WebhookOutbox] = web.AppKey("webhook_outbox")
OWNER_WEBHOOKS: web.AppKey[DatabaseOwnerEndpoints] = web.AppKey("owner_webhooks")
MAIL_NOTIFIER: web.AppKey[MailNotifier] = web.AppKey("mail_notifier")
TASK_RUNNER: web.AppKey[TaskRunner] = web.AppKey("task_runner")
TASK_QUEUE: web.AppKey[TaskQueue] = web.AppKey("task_queue")
IMAGE_CHECKS: web.AppKey[ImageChecks] = web.AppKey("image_checks")
SECRET_BOX: web.AppKey[SecretBox] = web.AppKey("secret_box")
FORGE_CLIENT: web.AppKey[ForgeClient] = web.AppKey("forge_client")
#: One check of the forge (`PATCH /v1/repos`) per account per `repo_check_interval_seconds`.
REPO_CHECK_LIMITER: web.AppKey[SlidingWindowLimiter] = web.AppKey("repo_check_limiter")
REGISTRY_SECRETS: web.AppKey[RegistryCredentials] = web.AppKey("registry_secrets")
# Several control planes (docs/high-availability.md): the NOTIFY fan-out and the
# leader lease whose duties the components register.
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")
LEADERSHIP: web.AppKey[Leadership] = web.AppKey("leadership")
BACKUPS: web.AppKey[BackupRunner] = web.AppKey("backups")
