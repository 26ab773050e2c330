"""Events: the in-process bus, the notifications WebSocket, webhooks."""

from controlplane.events.bus import Event, EventBus, EventType, Subscription

__all__ = ["Event", "EventBus", "EventType", "Subscription"]
