"""The rule for aiohttp app keys (docs/architecture.md, "App keys"): every shared key
is declared in controlplane/state.py; a key elsewhere is private to its module."""

from __future__ import annotations

import ast
from pathlib import Path

import controlplane

PACKAGE = Path(controlplane.__file__).parent


def _app_key_names(tree: ast.Module) -> list[tuple[str, int]]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            function = node.value.func
            called = function.attr if isinstance(function, ast.Attribute) else ""
            if isinstance(function, ast.Name):
                called = function.id
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if called == "AppKey":
                names += [(t.id, node.lineno) for t in targets if isinstance(t, ast.Name)]
    return names


def test_shared_app_keys_live_in_state_py() -> None:
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "state.py":
            continue
        for name, line in _app_key_names(ast.parse(path.read_text(encoding="utf-8"))):
            if not name.startswith("_"):
                stray.append(f"{path.relative_to(PACKAGE.parent)}:{line} {name}")
    assert not stray, f"declare shared app keys in controlplane/state.py: {stray}"


def test_the_check_sees_keys() -> None:
    state = ast.parse((PACKAGE / "state.py").read_text(encoding="utf-8"))
    assert {"DATABASE", "EVENT_BUS", "TASK_RUNNER"} <= {n for n, _ in _app_key_names(state)}
