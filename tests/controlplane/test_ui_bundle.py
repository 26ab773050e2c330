"""The built web UI's first load stays small: the login page's JS and CSS, read from
Vite's build manifest, gzip to at most 150 KB, and the console's and graphs' libraries
(xterm, uPlot) are not part of it (they load with the server page). Needs `make ui`
(which `make test` runs first)."""

from __future__ import annotations

import gzip
import json
from typing import Any

from controlplane.api.ui_assets import DEFAULT_DIST

LIMIT_BYTES = 150 * 1024


def first_load_files(manifest: dict[str, Any], entry: str = "index.html") -> set[str]:
    """The files a browser fetches before the entry runs: the entry chunk, the chunks
    it imports statically (recursively) and their CSS; dynamic imports are left out."""
    files: set[str] = set()
    pending, seen = [entry], set()
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        chunk = manifest[key]
        files.add(chunk["file"])
        files.update(chunk.get("css", []))
        pending.extend(chunk.get("imports", []))
    return files


def test_the_login_page_first_load_is_at_most_150_kb_gzipped() -> None:
    manifest_path = DEFAULT_DIST / ".vite" / "manifest.json"
    assert manifest_path.is_file(), f"no UI build at {DEFAULT_DIST}: run `make ui`"
    manifest = json.loads(manifest_path.read_text())
    files = first_load_files(manifest)
    sizes = {name: len(gzip.compress((DEFAULT_DIST / name).read_bytes(), 9)) for name in files}
    total = sum(sizes.values())
    assert total <= LIMIT_BYTES, f"first load {total} bytes gzipped: {sizes}"
    assert not any("xterm" in name or "uPlot" in name for name in files), files


def test_first_load_follows_static_imports_only() -> None:
    manifest = {
        "index.html": {
            "file": "a.js",
            "css": ["a.css"],
            "imports": ["_b"],
            "dynamicImports": ["c"],
        },
        "_b": {"file": "b.js", "imports": ["index.html"]},
        "c": {"file": "c.js"},
    }
    assert first_load_files(manifest) == {"a.js", "a.css", "b.js"}
