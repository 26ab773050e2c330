"""Templates as HCL: parse a template file into a :class:`Template` and write one back.

The format (docs/templates.md has a complete example): top-level attributes `id`,
`version`, `name`, `description`, `images`, `startup`, `egg`, `data_path`, `disk`,
`done`; blocks `stop { }`, `install { }`, `backup { }`, and labelled blocks `variable "ENV" { }`
(with a `rules { }` block), `config_file "path" { }` and `port "name" { }`.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

from pydantic import ValidationError

from common.config import ConfigError, parse_hcl
from controlplane.templates.model import BackupCommands, Template, done_pattern, literal_of

_HEREDOC = re.compile(r"^<<(-?)([A-Za-z_][A-Za-z0-9_]*)\n(.*?)\n?[ \t]*\2$", re.DOTALL)
_LABELLED = {"variable": ("variables", "env"), "config_file": ("config_files", "path"),
             "port": ("ports", "name")}  # fmt: skip


class TemplateError(ValueError):
    """A template that cannot be used; `problems` lists each as "where: what"."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def _string(value: str) -> str:
    # HCL escapes literal interpolation as $${ and %%{; heredocs arrive undecoded.
    match = _HEREDOC.match(value)
    if match:
        body = match.group(3)
        value = textwrap.dedent(body) if match.group(1) else body
    return value.replace("$${", "${").replace("%%{", "%{")


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _labelled(raw: Any, block: str) -> list[tuple[str, dict[str, Any]]]:
    """Labelled blocks arrive as {label: body} (one) or a list of those (several)."""
    items = raw if isinstance(raw, list) else [raw]
    result: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict):
            raise TemplateError(f'{block} blocks need a label, like {block} "NAME" {{ }}')
        for label, body in item.items():
            if not isinstance(body, dict):
                raise TemplateError(f'{block} "{label}" must be a block')
            result.append((label, body))
    return result


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def template_data_from_hcl(data: dict[str, Any]) -> dict[str, Any]:
    """The HCL document's values reshaped into the model's field names."""
    result = {k: v for k, v in data.items() if k not in _LABELLED}
    for block, (field, key) in _LABELLED.items():
        if block in data:
            result[field] = [{key: label, **body} for label, body in _labelled(data[block], block)]
    for variable in result.get("variables", []):
        if "default" in variable:
            variable["default"] = _as_text(variable["default"])
        if isinstance(variable.get("rules"), dict) and "one_of" in variable["rules"]:
            variable["rules"]["one_of"] = [_as_text(v) for v in variable["rules"]["one_of"]]
    for config in result.get("config_files", []):
        if isinstance(config.get("set"), dict):
            config["set"] = {k: _as_text(v) for k, v in config["set"].items()}
    if "done" in result and isinstance(result["done"], str | list):
        result["done"] = done_pattern(result["done"])
    return result


def load_template(data: dict[str, Any]) -> Template:
    """Validate plain data as a template; errors name the field, and for variables,
    config files and ports the variable, file or port rather than its index."""
    try:
        return Template.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_where(data, err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise TemplateError("invalid template: " + "; ".join(problems), problems) from None


def _where(data: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        parent = loc[index - 1] if index else None
        field = {"variables": ("variable", "env"), "config_files": ("config file", "path"),
                 "ports": ("port", "name")}.get(str(parent))  # fmt: skip
        if isinstance(part, int) and field is not None:
            items = data.get(str(parent), [])
            name = items[part].get(field[1]) if part < len(items) else None
            parts[-1] = f"{field[0]} {name if name is not None else part}"
        else:
            parts.append(str(part))
    return ".".join(parts) or "template"


def parse_template_hcl(text: str) -> Template:
    """Parse and validate a template written in HCL."""
    try:
        data = _plain(parse_hcl(text))
    except ConfigError as exc:
        raise TemplateError(str(exc)) from None
    return load_template(template_data_from_hcl(data))


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value).replace("${", "$${").replace("%{", "%%{")
    if isinstance(value, dict):
        inner = ", ".join(f"{_literal(k)} = {_literal(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    return json.dumps(value)


def _attributes(values: dict[str, Any], indent: str) -> list[str]:
    return [f"{indent}{key} = {_literal(v)}" for key, v in values.items() if v is not None]


def template_to_hcl(template: Template) -> str:
    """The template written as HCL that :func:`parse_template_hcl` reads back equal."""
    data = template.model_dump(exclude_defaults=False)
    blocks = {"variables", "config_files", "ports", "stop", "install", "backup"}
    top = {k: v for k, v in data.items() if k not in blocks}
    literal = literal_of(top["done"])
    top["done"] = (literal if literal is not None else "regex:" + top["done"]) or None
    lines = _attributes(top, "")
    lines += ["", "stop {", *_attributes(data["stop"], "  "), "}"]
    if data["install"] is not None:
        lines += ["", "install {", *_attributes(data["install"], "  "), "}"]
    if template.backup != BackupCommands():
        lines += ["", "backup {", *_attributes(data["backup"], "  "), "}"]
    for variable in data["variables"]:
        rules = {k: v for k, v in variable.pop("rules").items() if v is not None}
        lines += ["", f"variable {_literal(variable.pop('env'))} {{"]
        lines += [
            *_attributes(variable, "  "),
            "  rules {",
            *_attributes(rules, "    "),
            "  }",
            "}",
        ]
    for config in data["config_files"]:
        lines += ["", f"config_file {_literal(config.pop('path'))} {{"]
        lines += [*_attributes(config, "  "), "}"]
    for port in data["ports"]:
        lines += ["", f"port {_literal(port.pop('name'))} {{", *_attributes(port, "  "), "}"]
    return "\n".join(lines) + "\n"
