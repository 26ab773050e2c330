"""Console output history and live followers of one server."""
