"""E-mail to the owner when one of their tasks ends or a deployment fails (opt-in:
`controlplane { email_notifications = true }`). Mails go through the control plane's
mail outbox (SMTP, or the log without an SMTP host).

:class:`MailNotifier` follows the event log on the leader only (a leader duty), from a
cursor kept in ``webhook_cursors`` (row :data:`MAIL_CURSOR`): each batch's mails are
written to the mail outbox in the transaction that moves the cursor, so every event is
mailed exactly once across restarts and failovers, and events not yet looked at are
not pruned. The first time it starts at the settled horizon (the newest event, once
the events in flight below it have settled)."""

from __future__ import annotations

import asyncio
import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from common.logging import get_logger
from controlplane.db.tables import User
from controlplane.db.tables.events import MailMessage, WebhookCursor
from controlplane.events.bus import Event, EventType
from controlplane.events.store import EventStore
from controlplane.events.wakeup import EventWakeup
from controlplane.mail import MailOutbox

log = get_logger(__name__)

#: The mail notifier's row in `webhook_cursors` (webhook ids are UUIDs: no clash).
MAIL_CURSOR = "mail-notifications"
BATCH = 200
IDLE_SECONDS = 2.0


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
    """Mails the owners of the events :func:`mail_for` picks (see the module doc)."""

    def __init__(self, store: EventStore, wakeup: EventWakeup, outbox: MailOutbox) -> None:
        self._store = store
        self._db = store.database
        self._wakeup = wakeup
        self._outbox = outbox
        self.sent = 0
        self.following = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled."""
        cursor = await self._cursor()
        self.following.set()
        try:
            while True:
                events, through = await self._store.read_page(cursor, BATCH)
                if events:
                    await self._mail(events, through)
                cursor = through
                if events:
                    continue
                # asyncio.wait, not wait_for (Python 3.11 may swallow a cancel).
                woken = asyncio.ensure_future(self._wakeup.wait_beyond(cursor))
                try:
                    await asyncio.wait([woken], timeout=IDLE_SECONDS)
                finally:
                    woken.cancel()
        finally:
            self.following.clear()

    async def _cursor(self) -> int:
        return await self._store.follower_cursor(MAIL_CURSOR)

    async def _mail(self, events: list[Event], last: int) -> None:
        """Write the mails of `events` and move the cursor to `last` (at or past them),
        in one transaction."""
        written = 0
        async with self._db.transaction() as session:
            for event in events:
                mail = mail_for(event)
                if mail is None or event.owner_id is None:
                    continue
                address = await _address_of(session, event.owner_id)
                if address:
                    session.add(MailMessage(to=address, subject=mail[0], body=mail[1]))
                    written += 1
            row = await session.get(WebhookCursor, MAIL_CURSOR)
            if row is None:
                session.add(WebhookCursor(endpoint=MAIL_CURSOR, cursor=last))
            else:
                row.cursor = last
        if written:
            self.sent += written
            self._outbox.wake()


async def _address_of(session: AsyncSession, owner_id: str) -> str | None:
    try:
        key = uuid.UUID(owner_id)
    except ValueError:
        return None
    user = await session.get(User, key)
    return user.email if user is not None and user.is_active else None
