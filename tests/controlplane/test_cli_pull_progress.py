"""`encedeus deploy` shows a replica's pull as a progress bar."""

from __future__ import annotations

from controlplane.client.deployment_commands import pull_line


def test_a_pulling_replica_shows_a_bar_with_bytes_and_layers() -> None:
    pull = {
        "image": "127.0.0.1:5000/app:v1",
        "bytes_done": 25 * 2**20,
        "bytes_total": 50 * 2**20,
        "layers_done": 2,
        "layers_total": 6,
    }
    line = pull_line({"state": "pulling", "pull": pull})
    assert line == (
        "  pulling 127.0.0.1:5000/app:v1 [##########..........] 25.0/50.0 MiB, 2/6 layers"
    )
    assert pull_line({"state": "running", "pull": None}) is None
