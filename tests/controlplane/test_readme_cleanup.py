"""The README's "Cleaning up" commands name what `encedeus up` really uses."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.reconciler.model import LABEL_NODE
from controlplane.single_host.state import UpState, default_data_dir, save_state

README = Path(__file__).parents[2] / "README.md"


def test_the_readmes_clean_up_commands_use_the_names_up_really_uses(tmp_path: Path) -> None:
    readme = README.read_text()
    assert f'--filter "label={LABEL_NODE}=$NODE"' in readme
    assert "DIR=~/.local/share/encedeus\n" in readme
    assert str(default_data_dir()).endswith("/encedeus")
    save_state(tmp_path, UpState(node_id="n-1"))
    assert json.loads((tmp_path / "up.json").read_text())["node_id"] == "n-1"
