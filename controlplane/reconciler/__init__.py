"""The level-triggered reconciler: pure decisions (:func:`decide`) and the loop that
feeds them from the database and the agents and carries out their actions."""

from controlplane.reconciler.decide import decide
from controlplane.reconciler.model import (
    LABEL_DEPLOYMENT,
    LABEL_GENERATION,
    LABEL_NODE,
    LABEL_REPLICA,
    BackoffPolicy,
    DesiredDeployment,
    DesiredReplica,
    NodeView,
    ObservedServer,
    World,
)

__all__ = [
    "LABEL_DEPLOYMENT",
    "LABEL_GENERATION",
    "LABEL_NODE",
    "LABEL_REPLICA",
    "BackoffPolicy",
    "DesiredDeployment",
    "DesiredReplica",
    "NodeView",
    "ObservedServer",
    "World",
    "decide",
]
