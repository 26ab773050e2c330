"""The composition root: `build_app(config)` wires the control plane together.

Start order (cleanup contexts, reversed on shutdown): storage (secrets, migrations,
the shared-secrets check, database) → NOTIFY listener → mail outbox writer → event
feed → orchestration (agent pool) → tasks → leadership (the leader runs the
reconciler, follows tasks, delivers webhooks and mail and prunes events; see
docs/high-availability.md) → systemd readiness. Everything that
uses the database is stopped before it closes. Components that need I/O to start are
created empty here and filled by their cleanup context, since an application's keys
cannot change once it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from common.cancellation import cancel_and_wait
from common.logging import get_logger
from common.login_throttle import LoginThrottle
from controlplane.api.authentication import Authenticator
from controlplane.api.image_checks import ImageChecks
from controlplane.api.metrics import ApiMetrics
from controlplane.api.refresh_cookie import install_refresh_cookie
from controlplane.api.routes import build_routes
from controlplane.api.ui_assets import install_ui
from controlplane.backups.after_node_loss import LatestBackupOnNewNode
from controlplane.backups.wiring import install_backups
from controlplane.config import ControlPlaneConfig, prepare_data_dir
from controlplane.db.engine import Database, create_engine
from controlplane.db.migrate import upgrade_database
from controlplane.db.notify import asyncpg_connect_args, notifier_for
from controlplane.events.wiring import install_events
from controlplane.ingress.wiring import install_ingress
from controlplane.leadership import (
    Duty,
    Leadership,
    PostgresLeadership,
    SingleProcessLeadership,
)
from controlplane.leadership.shared_secrets import (
    check_shared_secrets,
    require_configured_secrets,
)
from controlplane.mail import MailOutbox, mailer_for, sender_of
from controlplane.reconciler.wiring import install_orchestration
from controlplane.repos.forge import ForgeClient
from controlplane.security.credentials import ServerKeys
from controlplane.security.rate_limit import SlidingWindowLimiter
from controlplane.security.registry_credentials import RegistryCredentials
from controlplane.security.secrets import SecretBox, resolve_secrets_key
from controlplane.state import (
    AUTHENTICATOR,
    CONFIG,
    DATABASE,
    FORGE_CLIENT,
    IMAGE_CHECKS,
    LEADERSHIP,
    LOGIN_THROTTLE,
    MAIL_OUTBOX,
    METRICS,
    NOTIFIER,
    RATE_LIMITER,
    REGISTRY_SECRETS,
    REPO_CHECK_LIMITER,
    ROUTES,
    SECRET_BOX,
    SERVER_KEYS,
)
from controlplane.systemd_notify import systemd_ctx
from controlplane.tasks.wiring import install_tasks

log = get_logger(__name__)


async def _prepare_storage(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    require_configured_secrets(config)
    jwt_secret = await asyncio.to_thread(prepare_data_dir, config)
    secrets_key = await asyncio.to_thread(resolve_secrets_key, config)
    app[SERVER_KEYS].load(jwt_secret)
    app[SECRET_BOX].load(secrets_key)
    revision = await upgrade_database(config.resolved_database_url())
    try:
        if app[DATABASE].dialect == "postgresql":
            await check_shared_secrets(app[DATABASE], jwt_secret, secrets_key)
        log.info("database_ready", dialect=app[DATABASE].dialect, revision=revision)
        yield
    finally:
        await app[DATABASE].close()


async def _run_notifier(app: web.Application) -> AsyncIterator[None]:
    await app[NOTIFIER].start()
    try:
        yield
    finally:
        await app[NOTIFIER].close()


async def _run_leadership(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[LEADERSHIP].run(), name="leadership")
    try:
        yield
    finally:
        await cancel_and_wait(task)


def _leadership_for(config: ControlPlaneConfig, database: Database) -> Leadership:
    if database.dialect != "postgresql":
        return SingleProcessLeadership()
    return PostgresLeadership(
        asyncpg_connect_args(database.engine),
        name=config.instance_name or None,
        retry_seconds=config.leader_retry_seconds,
        probe_seconds=config.leader_probe_seconds,
    )


async def _run_mail_outbox(app: web.Application) -> AsyncIterator[None]:
    # Every process writes the mails it posts; on PostgreSQL only the leader sends
    # them (the "mail-delivery" duty), on SQLite the one process does both.
    shared = app[DATABASE].dialect == "postgresql"
    async with app[MAIL_OUTBOX].running(deliver=not shared):
        yield


#: `max_line_size` of the HTTP server that serves :func:`build_app` (serve, up,
#: tests): a request line must hold the longest documented query (a file path of 1024
#: characters, each up to 4 UTF-8 bytes, percent-encoded: 12 KiB) so that aiohttp's
#: own parser never answers a documented request with its plain-text 400.
MAX_REQUEST_LINE = 16 * 1024


def build_app(config: ControlPlaneConfig) -> web.Application:
    """The control plane application for `config` (nothing touches disk until startup)."""
    # No middlewares: the endpoint layer renders errors and records metrics per route
    # (see api/endpoints.py), which keeps the hot path short.
    app = web.Application(client_max_size=config.max_request_bytes)
    app[CONFIG] = config
    app[METRICS] = ApiMetrics()
    app[LOGIN_THROTTLE] = LoginThrottle()
    app[RATE_LIMITER] = SlidingWindowLimiter(
        config.auth_rate_limit, config.auth_rate_window_seconds
    )
    database = Database(create_engine(config.resolved_database_url()))
    keys = ServerKeys()
    app[DATABASE] = database
    app[SERVER_KEYS] = keys
    app[AUTHENTICATOR] = authenticator = Authenticator(
        database, keys, config.api_key_cache_seconds, config.session_cache_seconds
    )
    app[NOTIFIER] = notifier = notifier_for(database.engine)
    app[LEADERSHIP] = leadership = _leadership_for(config, database)
    authenticator.follow(notifier)
    app[SECRET_BOX] = secrets = SecretBox()
    app[REGISTRY_SECRETS] = RegistryCredentials(secrets)
    app[IMAGE_CHECKS] = ImageChecks()
    app[FORGE_CLIENT] = ForgeClient(
        config.forge_api_url,
        config.forge_timeout_seconds,
        anonymous_ttl_seconds=config.forge_anonymous_cache_seconds,
    )
    app[REPO_CHECK_LIMITER] = SlidingWindowLimiter(1, config.repo_check_interval_seconds)
    app[MAIL_OUTBOX] = mail = MailOutbox(mailer_for(config), sender_of(config), database)
    if database.dialect == "postgresql":
        leadership.add_duty(Duty("mail-delivery", mail.deliver))

    routes = build_routes()
    app[ROUTES] = routes
    install_ui(app)  # before the API's catch-all (`routes.install`)
    routes.install(app)
    install_refresh_cookie(app)

    app.cleanup_ctx.append(_prepare_storage)
    app.cleanup_ctx.append(_run_notifier)
    app.cleanup_ctx.append(_run_mail_outbox)
    bus = install_events(app, config, database)
    pool, reconciler = install_orchestration(app, config, database, bus, (leadership, notifier))
    backups = install_backups(app, config, database, pool, (bus, leadership))
    # A slot moved after node loss gets its latest reachable backup (docs/stateful.md).
    reconciler.restore.hook = LatestBackupOnNewNode(backups.operations)
    install_ingress(app, config, database, (leadership, notifier), reconciler.placement)
    install_tasks(app, database, bus, leadership)
    app.cleanup_ctx.append(_run_leadership)
    app.cleanup_ctx.append(systemd_ctx)
    return app
