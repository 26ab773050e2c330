"""The ingress role: this node's Caddy, owned by the agent (a child process with its
admin API on a unix socket) and configured from the routing table the control plane
sends over gRPC (`ApplyRoutes`)."""
