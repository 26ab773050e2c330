"""Seed 004's webhook vocabulary, derived from our finer deployment events.

Seed 004 tells webhook receivers about each rollout with three events:
`deployment_started`, `deployment_completed`, `deployment_failed`, whose payload has
`status` `started` / `completed` / `failed` and the deployment's `url`. Our own events
say more (`deployment_created`, `deployment_status_changed` with pending, updating,
running, failed, stopped); webhooks get both. The mapping:

- `deployment_created` → started;
- `deployment_status_changed` to `pending` or `updating` → started (a new rollout: an
  update, a start after a stop, replicas moving off a lost node);
- to `running` → completed; to `failed` → failed; to `stopped` → nothing.

A seed event is derived only when it differs from the last one derived for that
deployment, so a status re-published with a new error message does not announce a
second rollout. The memory is per process and forgets deleted deployments.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.events.bus import Event, EventType

#: Our deployment status → the seed's rollout phase ("" = none to announce).
ROLLOUT_PHASES = {
    "pending": "started",
    "updating": "started",
    "running": "completed",
    "failed": "failed",
    "stopped": "",
}
SEED_EVENT_TYPES = {
    "started": EventType.DEPLOYMENT_STARTED,
    "completed": EventType.DEPLOYMENT_COMPLETED,
    "failed": EventType.DEPLOYMENT_FAILED,
}


class SeedRollouts:
    """Turns our deployment events into seed 004's rollout events (see module doc).

    `domain_suffix` makes each deployment's `url` (`https://<app_name>.<suffix>`, or
    null without one), as the REST API shows it.
    """

    def __init__(
        self, domain_suffix: str, url_of: Callable[[str], str | None] | None = None
    ) -> None:
        self._domain_suffix = domain_suffix
        # The ingress's own URL of an app (scheme and port it really serves).
        self._url_of = url_of
        self._last_phase: dict[str, str] = {}

    def derive(self, event: Event) -> list[Event]:
        """The seed events `event` implies (empty for all others)."""
        deployment_id = event.deployment_id
        if deployment_id is None:
            return []
        if event.type_name == EventType.DEPLOYMENT_DELETED:
            self._last_phase.pop(deployment_id, None)
            return []
        if event.type_name == EventType.DEPLOYMENT_CREATED:
            phase = "started"
        elif event.type_name == EventType.DEPLOYMENT_STATUS_CHANGED:
            phase = ROLLOUT_PHASES.get(str(event.data.get("status")), "")
        else:
            return []
        if phase == self._last_phase.get(deployment_id):
            return []
        self._last_phase[deployment_id] = phase
        if not phase:
            return []
        return [self._seed_event(event, phase)]

    def _seed_event(self, event: Event, phase: str) -> Event:
        app_name = event.data.get("app_name")
        url = (
            f"https://{app_name}.{self._domain_suffix}"
            if app_name and self._domain_suffix
            else None
        )
        if app_name and self._url_of is not None:
            url = self._url_of(str(app_name))
        return Event(
            SEED_EVENT_TYPES[phase],
            owner_id=event.owner_id,
            deployment_id=event.deployment_id,
            data={"status": phase, "app_name": app_name, "url": url},
            timestamp=event.timestamp,
        )
