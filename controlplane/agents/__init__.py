"""The agents as seen from the control plane: the gRPC client behind a Protocol, the
pool of per-node connections with their Watch streams, and node liveness."""

from controlplane.agents.client import AgentClient, AgentError, GrpcAgentClient
from controlplane.agents.liveness import NodeLiveness, Transition
from controlplane.agents.pool import (
    AgentPool,
    NodeEndpoint,
    NodeObservation,
    NodeSignal,
    grpc_client_factory,
)

__all__ = [
    "AgentClient",
    "AgentError",
    "AgentPool",
    "GrpcAgentClient",
    "NodeEndpoint",
    "NodeLiveness",
    "NodeObservation",
    "NodeSignal",
    "Transition",
    "grpc_client_factory",
]
