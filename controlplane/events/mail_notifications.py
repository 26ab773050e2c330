"""E-mail to the owner when one of their tasks ends or a deployment fails (opt-in:
`controlplane { email_notifications = true }`). Mails go through the control plane's
mail outbox (SMTP, or the log without an SMTP host)."""

from __future__ import annotations

import uuid

from common.logging import get_logger
from controlplane.db.engine import Database
from controlplane.db.tables import User
from controlplane.events.bus import Event, EventBus, EventType
from controlplane.mail import MailOutbox

log = get_logger(__name__)


def mail_for(event: Event) -> tuple[str, str] | None:
    """(subject, body) for an event worth a mail, else None."""
    data = event.data
    if event.type_name in (EventType.TASK_SUCCEEDED, EventType.TASK_FAILED):
        name = data.get("name") or event.task_id
        status = data.get("status", "")
        subject = f"Task {name} {str(status).lower()}"
        lines = [
            f"Your task {name} ({event.task_id}) has {str(status).lower()}.",
            f"Image: {data.get('image', '')}",
            f"Exit code: {data.get('exit_code')}",
        ]
        if data.get("error_message"):
            lines.append(f"Reason: {data['error_message']}")
        lines.append(f"Logs: GET /v1/tasks/{event.task_id}/logs")
        return subject, "\n".join(lines) + "\n"
    if event.type_name == EventType.DEPLOYMENT_STATUS_CHANGED and data.get("status") == "failed":
        name = data.get("app_name") or event.deployment_id
        body = (
            f"Your deployment {name} ({event.deployment_id}) has failed.\n"
            f"Reason: {data.get('error_message') or data.get('message') or 'see its logs'}\n"
        )
        return f"Deployment {name} failed", body
    return None


class MailNotifier:
    """Consumes the bus and posts the mails of :func:`mail_for` to the owners."""

    def __init__(self, bus: EventBus, outbox: MailOutbox, database: Database) -> None:
        self._bus = bus
        self._outbox = outbox
        self._db = database
        self.sent = 0

    async def _address_of(self, owner_id: str) -> str | None:
        try:
            key = uuid.UUID(owner_id)
        except ValueError:
            return None
        async with self._db.session() as session:
            user = await session.get(User, key)
        return user.email if user is not None and user.is_active else None

    async def run(self) -> None:
        """Until cancelled."""
        async with self._bus.subscribe(
            lambda e: e.owner_id is not None and mail_for(e) is not None, name="mail"
        ) as events:
            async for event in events:
                mail = mail_for(event)
                if mail is None or event.owner_id is None:
                    continue
                try:
                    address = await self._address_of(event.owner_id)
                except Exception:
                    log.exception("mail_owner_lookup_failed", owner_id=event.owner_id)
                    continue
                if address:
                    self._outbox.post(address, *mail)
                    self.sent += 1
