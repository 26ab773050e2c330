"""Encedeus control plane: accounts, nodes, deployments, tasks and the REST API."""

__version__ = "0.1.0"
