"""A slot's data on the nodes: orphan listings, the sweep of due copies, moves."""
