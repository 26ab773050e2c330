"""The bundled templates ship inside the installed package, not only in the tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[3]


def test_the_wheel_holds_every_bundled_template(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=240,
    )  # fmt: skip
    [wheel] = tmp_path.glob("encedeus-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {
        f"controlplane/templates/bundled/{p.name}"
        for p in (ROOT / "controlplane/templates/bundled").glob("*.hcl")
    }
    assert len(bundled) >= 5
    assert bundled <= names
