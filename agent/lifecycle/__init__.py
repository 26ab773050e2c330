"""Per-server lifecycle: a pure state machine and the health probes that feed it."""
