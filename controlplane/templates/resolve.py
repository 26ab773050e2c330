"""A template plus an owner's variables -> what a deployment runs (pure).

The result is stored on the deployment, so a later edit of the template changes no
running server until its owner asks (`PUT /v1/deployments/{id}/variables`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controlplane.templates.model import PLACEHOLDER, Template
from controlplane.templates.rules import check_value

MAX_VALUE_LENGTH = 4096
BIND_ADDRESS = "0.0.0.0"


class VariablesInvalid(ValueError):
    """Values that break the template's rules; `problems` maps each variable to why."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(
            "; ".join(f"variable {name} {problem}" for name, problem in problems.items())
        )
        self.problems = problems


@dataclass(frozen=True)
class Resolution:
    """What the deployment runs. `ports` are container ports, 0 meaning "the host
    port it is given" (the egg contract), published with `port_protocols` ("tcp",
    "udp" or "tcp+udp", as a deployment's own ports are); `disk` is the template's
    disk size default ("" for none); `record` is what the deployment stores
    under `template` (id, version, values and the parts the agent applies)."""

    image: str
    command: list[str]
    env: dict[str, str]
    ports: list[int]
    port_protocols: list[str]
    stop_command: str
    stop_signal: str
    stop_timeout: int
    restart_policy: str | None
    disk: str = ""
    record: dict[str, Any] = field(default_factory=dict)


def port_protocol(protocols: Sequence[str]) -> str:
    """A template port's protocols as a deployment port's protocol: "tcp", "udp" or
    "tcp+udp"."""
    return "+".join(p for p in ("tcp", "udp") if p in protocols)


def as_shell(startup: str) -> str:
    """`{{VAR}}` -> `${VAR}`: the value comes from the environment, never parsed as
    shell code."""
    return PLACEHOLDER.sub(lambda m: "${" + m.group(1) + "}", startup)


def variable_values(
    template: Template, given: Mapping[str, str], previous: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Every variable's value: `given` over `previous` over the default, checked
    against the rules. Raises VariablesInvalid naming each bad variable."""
    problems: dict[str, str] = {}
    for name in given:
        variable = template.variable(name)
        if variable is None:
            problems[name] = "is not a variable of template " + template.id
        elif not variable.user_editable and given[name] != variable.default:
            problems[name] = "cannot be changed"
        elif len(given[name]) > MAX_VALUE_LENGTH:
            problems[name] = f"is longer than {MAX_VALUE_LENGTH} characters"
    values: dict[str, str] = {}
    for variable in template.variables:
        value = given.get(variable.env, (previous or {}).get(variable.env, variable.default))
        if not variable.user_editable:
            value = variable.default
        problem = check_value(variable.rules, value)
        if problem is not None and variable.env not in problems:
            problems[variable.env] = problem
        values[variable.env] = value
    if problems:
        raise VariablesInvalid(problems)
    return values


def resolve_template(
    template: Template,
    given: Mapping[str, str],
    *,
    image_label: str | None,
    memory_bytes: int,
    previous: Mapping[str, str] | None = None,
) -> Resolution:
    """Resolve `template` for one deployment. Raises VariablesInvalid (bad values) or
    KeyError (an image label the template does not have)."""
    if image_label is not None and image_label not in template.images:
        raise KeyError(image_label)
    values = variable_values(template, given, previous)
    env = dict(values)
    env["SERVER_IP"] = BIND_ADDRESS
    env["SERVER_MEMORY"] = str(memory_bytes // 2**20)
    ports = [p.container_port or 0 for p in template.ports]
    if ports and ports[0]:
        env["SERVER_PORT"] = str(ports[0])
    startup = as_shell(template.startup)
    if template.egg:
        env["STARTUP"] = startup
    return Resolution(
        image=template.images[image_label] if image_label else template.default_image(),
        command=[] if template.egg else ["/bin/sh", "-c", startup],
        env=env,
        ports=ports,
        port_protocols=[port_protocol(p.protocols) for p in template.ports],
        stop_command=template.stop.command,
        stop_signal=template.stop.signal,
        stop_timeout=template.stop.timeout_seconds,
        restart_policy=template.restart_policy,
        disk=template.disk or "",
        record=_record(template, values, image_label),
    )


def _record(template: Template, values: dict[str, str], image_label: str | None) -> dict[str, Any]:
    return {
        "id": template.id,
        "version": template.version,
        "image_label": image_label,
        "variables": values,
        # Shown to admins only (the template's user_viewable = false).
        "hidden": [v.env for v in template.variables if not v.user_viewable],
        "egg": template.egg,
        "done_pattern": template.done,
        "data_mount_path": template.data_path,
        "config_files": [c.model_dump() for c in template.config_files],
        "install": template.install.model_dump() if template.install else None,
        "backup": template.backup.model_dump(),
    }
