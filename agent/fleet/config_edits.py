"""Config-file edits of templates, applied beneath a server's data directory before
each start.

Each edit names a file (relative to the data directory), a parser and key -> value
pairs (values already rendered by the control plane). Files are opened beneath the
directory only (agent/files/confine.py): a symlink a container made that leads out is
refused, never followed. An edit that cannot be made is reported, never fatal: the
server starts with the file as it was.

The text transforms are pure; :func:`apply_config_edits` blocks (run it in a thread).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from agent.files.confine import open_regular_beneath
from agent.fleet.data_dir import Owner
from protos import agent_pb2 as pb

MAX_CONFIG_BYTES = 4 * 2**20
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")


def edit_properties(text: str, values: Mapping[str, str]) -> str:
    """`key=value` lines: an existing key's line is replaced, a missing key appended."""
    lines = text.splitlines()
    missing = dict(values)
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped or stripped[0] in "#!":
            continue
        key = re.split(r"\s*[=:]\s*|\s+", stripped, maxsplit=1)[0]
        if key in missing:
            lines[index] = f"{key}={missing.pop(key)}"
    lines += [f"{key}={value}" for key, value in missing.items()]
    return "\n".join(lines) + "\n"


def edit_ini(text: str, values: Mapping[str, str]) -> str:
    """`section.key` (or `key` before any section) set to value; missing keys are added
    at the end of their section, missing sections at the end of the file."""
    wanted: dict[str, dict[str, str]] = {}
    for dotted, value in values.items():
        section, _, key = dotted.rpartition(".")
        wanted.setdefault(section, {})[key] = value
    out: list[str] = []
    section = ""

    def flush(name: str) -> None:
        out.extend(f"{key} = {value}" for key, value in wanted.pop(name, {}).items())

    for line in text.splitlines():
        header = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if header:
            flush(section)
            section = header.group(1).strip()
            out.append(line)
            continue
        key = re.split(r"\s*[=:]\s*", line.strip(), maxsplit=1)[0]
        pending = wanted.get(section, {})
        out.append(f"{key} = {pending.pop(key)}" if key in pending else line)
    flush(section)
    for name in list(wanted):
        out.append(f"[{name}]")
        flush(name)
    return "\n".join(out) + "\n"


def edit_lines(text: str, values: Mapping[str, str]) -> str:
    """Plain files: every line starting with a key is replaced by its value."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        for prefix, value in values.items():
            if line.startswith(prefix):
                lines[index] = value
                break
    return "\n".join(lines) + "\n"


def _typed(value: str) -> Any:
    # Structured files keep numbers and booleans typed, as the programs reading them expect.
    if value in ("true", "false"):
        return value == "true"
    if _INTEGER.match(value):
        return int(value)
    return value


def set_path(document: Any, path: list[str], value: Any) -> Any:
    """Set the dotted `path` in a JSON-like document (dicts made as needed, list
    indexes by number, `*` for every child); the document, possibly replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, list):
        if head == "*":
            return [set_path(item, rest, value) for item in document]
        if head.isdigit() and int(head) < len(document):
            document[int(head)] = set_path(document[int(head)], rest, value)
        return document
    if not isinstance(document, dict):
        document = {}
    if head == "*":
        for key in document:
            document[key] = set_path(document[key], rest, value)
        return document
    document[head] = set_path(document.get(head), rest, value)
    return document


def edit_structured(text: str, values: Mapping[str, str], parser: str) -> str:
    """yaml or json: each dotted key set to its (typed) value."""
    document = (
        (yaml.safe_load(text) if parser == "yaml" else json.loads(text)) if text.strip() else {}
    )
    for dotted, value in values.items():
        document = set_path(document, dotted.split("."), _typed(value))
    if parser == "yaml":
        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return json.dumps(document, indent=2) + "\n"


def edited_text(text: str, edit: pb.ConfigFileEdit) -> str:
    """The file's new text. ValueError (or a parser's error) when it cannot be read."""
    values = dict(edit.set)
    if edit.parser == "properties":
        return edit_properties(text, values)
    if edit.parser == "ini":
        return edit_ini(text, values)
    if edit.parser == "file":
        return edit_lines(text, values)
    if edit.parser in ("yaml", "json"):
        return edit_structured(text, values, edit.parser)
    raise ValueError(f"unknown parser {edit.parser!r}")


def _read_beneath(root: int, path: str) -> str | None:
    try:
        fd = open_regular_beneath(
            root, os.fsencode(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        )
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


def _write_beneath(root: int, path: str, text: str, owner: Owner) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = open_regular_beneath(root, os.fsencode(path), flags, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode())
        os.fchown(handle.fileno(), *owner)


def apply_config_edits(data_dir: str, edits: list[pb.ConfigFileEdit], owner: Owner) -> list[str]:
    """Apply every edit beneath `data_dir`, files written as `owner`; one message per
    edit that could not be made (blocking)."""
    problems: list[str] = []
    root = os.open(data_dir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for edit in edits:
            try:
                text = _read_beneath(root, edit.path)
                if text is None and edit.parser == "file":
                    continue  # nothing to replace lines in
                _write_beneath(root, edit.path, edited_text(text or "", edit), owner)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                problems.append(f"config file {edit.path} not edited: {exc}")
    finally:
        os.close(root)
    return problems
