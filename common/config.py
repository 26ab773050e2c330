"""HCL configuration loading shared by the agent and the control plane.

`config.hcl` holds an `agent { }` and a `controlplane { }` block; each program reads
its own with :func:`load_section`, which validates it against a pydantic model that
forbids unknown keys. Every problem is a :class:`ConfigError` naming the key and, when
it can be found in the file, the line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import hcl2
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key and line."""


def _unquote(value: str) -> str:
    # python-hcl2 keeps the quotes of string literals; HCL escapes match Python's.
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            result = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value[1:-1]
        return result if isinstance(result, str) else value[1:-1]
    return value


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return _unquote(value)
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            # A nested block (`reserved { ... }`) is a list of one dict; repeated blocks
            # stay a list.
            blocks = [_normalize(v) for v in value]
            return blocks[0] if len(blocks) == 1 else blocks
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        # python-hcl2 adds metadata keys (__is_block__, __comments__, ...): not settings.
        return {
            _unquote(str(k)): _normalize(v)
            for k, v in value.items()
            if not (str(k).startswith("__") and str(k).endswith("__"))
        }
    return value


def parse_hcl(text: str) -> dict[str, Any]:
    """Parse HCL text into plain Python values (strings unquoted, blocks as dicts)."""
    try:
        raw = hcl2.loads(text)
    except Exception as exc:  # the parser raises lark's own error types
        raise ConfigError(f"invalid HCL: {exc}") from exc
    result = _normalize(raw)
    assert isinstance(result, dict)
    return result


def line_of(text: str, section: str, key: str) -> int | None:
    """The 1-based line on which `key` is set inside the `section` block, if found."""
    in_section = section == ""
    depth = 0
    pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*(=|\{{)")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.split("#", 1)[0]
        if not in_section and re.match(rf"^\s*{re.escape(section)}\s*\{{", stripped):
            in_section = True
            depth = 0
        if in_section and pattern.match(stripped):
            return number
        if in_section and section:
            depth += stripped.count("{") - stripped.count("}")
            if depth <= 0 and "}" in stripped:
                in_section = False
    return None


def _describe(exc: ValidationError, text: str, section: str) -> str:
    problems = []
    for err in exc.errors():
        path = [str(p) for p in err["loc"]]
        key = path[-1] if path else section
        if err["type"] == "extra_forbidden":
            message = f"unknown key {'.'.join(path)!r}"
        else:
            message = f"{'.'.join(path)}: {err['msg']}"
        line = line_of(text, section, key) if text else None
        where = f" (line {line})" if line else ""
        problems.append(f"{section} block: {message}{where}")
    return "; ".join(problems)


def validate_section(
    model: type[ModelT], values: Mapping[str, Any], *, section: str, text: str = ""
) -> ModelT:
    """Validate `values` for `section` against `model`, naming keys and lines on error."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, text, section)) from exc


def read_section(path: Path | None, section: str) -> tuple[dict[str, Any], str]:
    """The raw values of `section` in the HCL file at `path` (empty when no file)."""
    if path is None:
        return {}, ""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    document = parse_hcl(text)
    unknown = sorted(set(document) - {"agent", "controlplane"})
    if unknown:
        line = line_of(text, "", unknown[0])
        where = f" (line {line})" if line else ""
        raise ConfigError(f"unknown top-level block {unknown[0]!r}{where}")
    block = document.get(section, {})
    if isinstance(block, list):
        raise ConfigError(f"the {section} block appears more than once")
    return dict(block), text


def load_section(
    path: Path | None,
    section: str,
    model: type[ModelT],
    overrides: Mapping[str, Any] | None = None,
) -> ModelT:
    """Read, override (e.g. from the environment) and validate one block of a file."""
    values, text = read_section(path, section)
    values.update(overrides or {})
    return validate_section(model, values, section=section, text=text)
