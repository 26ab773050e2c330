"""What a handler may ask of its request: the caller, the database, the settings.

user = current_user(request)            # set by USER/ADMIN access, else 500
async with database(request).transaction() as session: ...
require_admin(request)                  # 403 unless the caller is an admin
"""

from __future__ import annotations

import uuid

from aiohttp import web

from controlplane.api.authentication import CURRENT_USER, Authenticator, CurrentUser
from controlplane.api.errors import Forbidden, NotFound
from controlplane.config import ControlPlaneConfig
from controlplane.db.engine import Database
from controlplane.mail import MailOutbox
from controlplane.security.credentials import ServerKeys
from controlplane.state import AUTHENTICATOR, CONFIG, DATABASE, MAIL_OUTBOX, SERVER_KEYS


def current_user(request: web.Request) -> CurrentUser:
    """The authenticated caller of a route declared with USER or ADMIN access."""
    try:
        return request[CURRENT_USER]
    except KeyError:
        raise RuntimeError("current_user() on a route without USER/ADMIN access") from None


def require_admin(request: web.Request) -> CurrentUser:
    """The caller, who must be an admin (403 otherwise)."""
    user = current_user(request)
    if not user.is_admin:
        raise Forbidden("administrators only", code="admin_required")
    return user


def database(request: web.Request) -> Database:
    """The application's database."""
    return request.app[DATABASE]


def settings(request: web.Request) -> ControlPlaneConfig:
    """The control plane's configuration."""
    return request.app[CONFIG]


def server_keys(request: web.Request) -> ServerKeys:
    """Keys for signing tokens and hashing stored credentials."""
    return request.app[SERVER_KEYS]


def authenticator(request: web.Request) -> Authenticator:
    """The credential resolver (and its cache, to invalidate on revocation)."""
    return request.app[AUTHENTICATOR]


def mail_outbox(request: web.Request) -> MailOutbox:
    """Where handlers drop e-mails; a background worker sends them."""
    return request.app[MAIL_OUTBOX]


def path_uuid(request: web.Request, name: str = "id") -> uuid.UUID:
    """The path parameter `name` as a UUID; 404 when it is not one."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound("no such resource") from None
