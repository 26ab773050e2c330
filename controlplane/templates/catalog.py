"""Where templates come from: the bundled ones (package data, read-only) and the
`templates` table (added over the API), and how a request body becomes one."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from common.json_input import load_untrusted_json
from controlplane.templates.eggs import egg_to_template, looks_like_egg, parse_egg_text
from controlplane.templates.hcl import TemplateError, load_template, parse_template_hcl
from controlplane.templates.model import Template

HCL_TYPES = frozenset({"application/hcl", "text/x-hcl", "text/hcl", "text/plain"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


@functools.cache
def bundled_templates() -> dict[str, Template]:
    """The templates shipped in controlplane/templates/bundled (blocking file I/O:
    call it in a thread the first time; later calls are cached)."""
    folder = resources.files("controlplane.templates") / "bundled"
    result: dict[str, Template] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".hcl"):
            template = parse_template_hcl(entry.read_text(encoding="utf-8"))
            result[template.id] = template
    return result


def template_from_body(
    text: str, content_type: str, *, template_id: str | None = None
) -> tuple[Template, list[str]]:
    """A template from a request body: HCL (text/plain, application/hcl), or JSON /
    YAML that is either an egg (converted, with warnings) or our own JSON document.
    `template_id` names an egg's template (default: a slug of its name)."""
    if content_type in HCL_TYPES:
        return parse_template_hcl(text), []
    if content_type != "application/json" and content_type not in YAML_TYPES:
        raise TemplateError(
            f"send HCL (text/plain) or an egg / template as JSON or YAML, not {content_type}"
        )
    data: Any
    if content_type == "application/json":
        try:
            data = load_untrusted_json(text)
        except ValueError as exc:  # UntrustedJsonError too: depth, NaN, huge integers
            raise TemplateError(f"the body is not valid JSON: {exc}") from None
    else:
        data = parse_egg_text(text)
    if not isinstance(data, dict):
        raise TemplateError("a template or egg is a JSON or YAML object")
    if looks_like_egg(data):
        return egg_to_template(data, template_id=template_id)
    return load_template(data), []
