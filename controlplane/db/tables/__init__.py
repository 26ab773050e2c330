"""Every sqlmodel table, imported here so that `SQLModel.metadata` knows them all.

Add a module per noun group (nodes.py, deployments.py, ...) and import it below; the
Alembic autogenerate run and the metadata checks in the tests see it from here.
"""

from sqlmodel import SQLModel

# Stable constraint names, so that migrations written on SQLite and PostgreSQL agree.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

from controlplane.db.tables.accounts import (  # noqa: E402
    ApiKey,
    AuthSession,
    PasswordReset,
    RefreshToken,
    SshKey,
    User,
)
from controlplane.db.tables.backups import Backup, BackupPolicy  # noqa: E402
from controlplane.db.tables.cluster import Cluster  # noqa: E402
from controlplane.db.tables.domains import CustomDomain  # noqa: E402
from controlplane.db.tables.events import (  # noqa: E402
    EventRecord,
    MailMessage,
    WebhookCursor,
    WebhookDelivery,
)
from controlplane.db.tables.exec_sessions import ExecSession  # noqa: E402
from controlplane.db.tables.orchestration import Deployment, Node, Replica  # noqa: E402
from controlplane.db.tables.quotas import AccountQuota  # noqa: E402
from controlplane.db.tables.repos import Repo  # noqa: E402
from controlplane.db.tables.tasks import Task, TaskFile, TaskFileChunk, TaskLog  # noqa: E402
from controlplane.db.tables.templates import TemplateRow  # noqa: E402
from controlplane.db.tables.volumes import ReleasedVolume, VolumeCopy  # noqa: E402
from controlplane.db.tables.webhooks import Webhook  # noqa: E402

__all__ = [
    "AccountQuota",
    "ApiKey",
    "AuthSession",
    "Backup",
    "BackupPolicy",
    "Cluster",
    "CustomDomain",
    "Deployment",
    "EventRecord",
    "ExecSession",
    "MailMessage",
    "Node",
    "PasswordReset",
    "RefreshToken",
    "ReleasedVolume",
    "Replica",
    "Repo",
    "SshKey",
    "Task",
    "TaskFile",
    "TaskFileChunk",
    "TaskLog",
    "TemplateRow",
    "User",
    "VolumeCopy",
    "Webhook",
    "WebhookCursor",
    "WebhookDelivery",
]
