"""The events a deployment's life announces, built in one place: the API (create,
stop/kill, delete) and the reconciler (the statuses it derives) send the same shapes."""

from __future__ import annotations

from controlplane.db.tables import Deployment
from controlplane.events.bus import Event, EventType


def deployment_created(deployment: Deployment) -> Event:
    """`deployment_created`: its name and first status."""
    return Event(
        EventType.DEPLOYMENT_CREATED,
        owner_id=str(deployment.user_id),
        deployment_id=str(deployment.id),
        data={"app_name": deployment.app_name, "status": deployment.status},
    )


def deployment_status_changed(deployment: Deployment) -> Event:
    """`deployment_status_changed`: the status it has now."""
    return Event(
        EventType.DEPLOYMENT_STATUS_CHANGED,
        owner_id=str(deployment.user_id),
        deployment_id=str(deployment.id),
        data={"status": deployment.status, "app_name": deployment.app_name},
    )


def deployment_deleted(deployment: Deployment) -> Event:
    """`deployment_deleted`: the name it had."""
    return Event(
        EventType.DEPLOYMENT_DELETED,
        owner_id=str(deployment.user_id),
        deployment_id=str(deployment.id),
        data={"app_name": deployment.app_name},
    )
