"""Pterodactyl (PTDL_v1/PTDL_v2) and Pelican (PLCN_v1..v3, JSON or YAML) eggs to
templates, and templates back to PTDL_v2.

An imported egg keeps the egg image contract (`egg = true`): data at /home/container,
the startup command passed as STARTUP, the primary port equal inside and outside.
Whatever cannot be converted is returned as a warning naming it, never dropped
silently.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import yaml

from common.json_input import load_untrusted_json
from controlplane.templates.egg_rules import rules_from_laravel, rules_to_laravel
from controlplane.templates.hcl import TemplateError, load_template
from controlplane.templates.model import Template, done_pattern, literal_of

EGG_VERSIONS = ("PTDL_v1", "PTDL_v2", "PLCN_v1", "PLCN_v2", "PLCN_v3")
# Panel placeholders in config files -> ours.
_PLACEHOLDERS = {
    "server.build.default.port": "server.port",
    "server.allocations.default.port": "server.port",
    "server.build.default.ip": "server.ip",
    "server.allocations.default.ip": "server.ip",
    "server.build.memory": "server.memory",
    "server.build.memory_limit": "server.memory",
}
_ENV_PLACEHOLDER = re.compile(r"^(?:server\.build\.env|server\.environment|env)\.([A-Za-z0-9_]+)$")
_PARSERS = ("properties", "yaml", "json", "ini", "file")
_IGNORED_KEYS = {"_comment", "meta", "exported_at", "author", "uuid", "tags", "update_url"}


def parse_egg_text(text: str) -> dict[str, Any]:
    """An egg document from JSON or YAML text (YAML is a superset of JSON)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"the egg is neither JSON nor YAML: {exc}") from None
    except RecursionError:
        raise TemplateError("the egg is nested too deeply") from None
    if not isinstance(data, dict):
        raise TemplateError("an egg is a JSON or YAML object")
    return data


def looks_like_egg(data: dict[str, Any]) -> bool:
    """Whether `data` is an egg (by its meta version, or the egg's own fields)."""
    meta = data.get("meta")
    if isinstance(meta, dict) and str(meta.get("version", "")).startswith(("PTDL_", "PLCN_")):
        return True
    return "docker_images" in data and ("startup" in data or "startup_commands" in data)


def _embedded(value: Any, what: str, warnings: list[str]) -> Any:
    """Config sections are JSON text in PTDL eggs and objects in Pelican ones."""
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            return load_untrusted_json(value)
        except ValueError:  # UntrustedJsonError too: depth, NaN, huge integers
            if what == "stop":
                return value
            warnings.append(f"config.{what} is not valid JSON and was not converted")
            return {}
    return value if value is not None else {}


def slug_of(name: str) -> str:
    """A template id made from an egg's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    return slug or "egg"


def egg_to_template(
    data: dict[str, Any], *, template_id: str | None = None
) -> tuple[Template, list[str]]:
    """Convert an egg; the warnings name what was not carried over."""
    warnings: list[str] = []
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    version = str(meta.get("version", "")) if meta else ""
    if version and version not in EGG_VERSIONS:
        warnings.append(f"egg format {version} is unknown; read as {EGG_VERSIONS[-1]}")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise TemplateError("the egg's config must be an object")
    name = str(data.get("name") or "egg")
    template: dict[str, Any] = {
        "id": template_id or slug_of(name),
        "version": str(data.get("exported_at") or "1")[:64],
        "name": name,
        "description": str(data.get("description") or ""),
        "images": _images(data),
        "startup": _startup(data, warnings),
        "egg": True,
        "variables": [_variable(v, warnings) for v in data.get("variables") or []],
        "done": _done(_embedded(config.get("startup"), "startup", warnings), warnings),
        "stop": _stop(_embedded(config.get("stop"), "stop", warnings)),
        "config_files": _config_files(_embedded(config.get("files"), "files", warnings), warnings),
        "ports": [{"name": "default", "protocols": ["tcp", "udp"]}],
    }
    install = _install(data.get("scripts"), warnings)
    if install is not None:
        template["install"] = install
    _warn_unused(data, config, warnings)
    return load_template(template), warnings


def _images(data: dict[str, Any]) -> dict[str, str]:
    images = data.get("docker_images")
    if isinstance(images, dict) and images:
        return {str(k): str(v) for k, v in images.items()}
    if isinstance(images, list) and images:
        return {str(v): str(v) for v in images}
    if data.get("docker_image"):
        return {"default": str(data["docker_image"])}
    raise TemplateError("the egg names no docker image")


def _startup(data: dict[str, Any], warnings: list[str]) -> str:
    commands = data.get("startup_commands")
    if isinstance(commands, dict) and commands:
        labels = list(commands)
        if len(labels) > 1:
            warnings.append("startup_commands: only the first (" + labels[0] + ") is used; "
                            "not converted: " + ", ".join(labels[1:]))  # fmt: skip
        return str(commands[labels[0]])
    if not data.get("startup"):
        raise TemplateError("the egg has no startup command")
    return str(data["startup"])


def _variable(raw: Any, warnings: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw.get("env_variable"):
        raise TemplateError("every egg variable needs an env_variable")
    env = str(raw["env_variable"])
    rules, rule_warnings = rules_from_laravel(env, raw.get("rules") or "")
    warnings.extend(rule_warnings)
    default = raw.get("default_value")
    return {
        "env": env,
        "name": str(raw.get("name") or env),
        "description": str(raw.get("description") or ""),
        "default": "" if default is None else str(default),
        "user_viewable": bool(raw.get("user_viewable", True)),
        "user_editable": bool(raw.get("user_editable", True)),
        "rules": rules.model_dump(exclude_none=True),
    }


def _done(startup: Any, warnings: list[str]) -> str:
    if not isinstance(startup, dict):
        return ""
    if startup.get("userInteraction"):
        warnings.append("config.startup.userInteraction is not supported")
    done = startup.get("done", "")
    if isinstance(done, list):
        return done_pattern([str(d) for d in done])
    return done_pattern(str(done)) if done else ""


def _stop(stop: Any) -> dict[str, Any]:
    # The panels' convention: "^C" is Ctrl+C (SIGINT), "^X" sends signal X, any
    # other text is a console command.
    text = str(stop or "").strip()
    if not text or text == "^C":
        return {"signal": "SIGINT"} if text else {}
    if text.startswith("^"):
        signal = text[1:].upper()
        return {"signal": signal if signal.startswith("SIG") else "SIG" + signal}
    return {"command": text}


def _placeholder(match: re.Match[str], where: str, warnings: list[str]) -> str:
    name = match.group(1).strip()
    if name in _PLACEHOLDERS:
        return "{{" + _PLACEHOLDERS[name] + "}}"
    env = _ENV_PLACEHOLDER.match(name)
    if env:
        return "{{env." + env.group(1) + "}}"
    warnings.append(f"{where}: placeholder {{{{{name}}}}} is unknown and was left out")
    return ""


def _translate(text: str, where: str, warnings: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        return _placeholder(match, where, warnings)

    return re.sub(r"\{\{([^}]*)\}\}", replace, text)


def _config_files(files: Any, warnings: list[str]) -> list[dict[str, Any]]:
    if not isinstance(files, dict):
        return []
    result = []
    for path, spec in files.items():
        parser = str((spec or {}).get("parser", "file"))
        if parser not in _PARSERS:
            warnings.append(f"config file {path}: parser {parser!r} is not supported")
            continue
        values: dict[str, str] = {}
        for key, value in ((spec or {}).get("find") or {}).items():
            where = f"config file {path}, key {key}"
            if isinstance(value, dict | list):
                warnings.append(f"{where}: conditional replacements are not supported")
                continue
            values[str(key)] = _translate("" if value is None else str(value), where, warnings)
        if values:
            result.append({"path": path, "parser": parser, "set": values})
    return result


def _install(scripts: Any, warnings: list[str]) -> dict[str, Any] | None:
    installation = scripts.get("installation") if isinstance(scripts, dict) else None
    if not isinstance(installation, dict) or not str(installation.get("script") or "").strip():
        return None
    # Eggs' install scripts download what they install: they get the network.
    return {
        "image": str(installation.get("container") or "ghcr.io/pterodactyl/installers:alpine"),
        "entrypoint": str(installation.get("entrypoint") or "ash"),
        "script": str(installation["script"]).replace("\r\n", "\n"),
        "network": True,
    }


def _warn_unused(data: dict[str, Any], config: dict[str, Any], warnings: list[str]) -> None:
    if data.get("features"):
        warnings.append("features " + ", ".join(map(str, data["features"])) + " are panel UI "
                        "features and are not converted")  # fmt: skip
    if data.get("file_denylist"):
        warnings.append("file_denylist is not enforced")
    if data.get("config", {}).get("extends") or config.get("extends"):
        warnings.append("config.extends (copying another egg's config) is not supported")
    logs = _embedded(config.get("logs"), "logs", [])
    if logs:
        warnings.append("config.logs is not converted")
    known = _IGNORED_KEYS | {
        "name", "description", "docker_images", "docker_image", "startup",
        "startup_commands", "config", "scripts", "variables", "features", "file_denylist",
    }  # fmt: skip
    for key in sorted(set(data) - known):
        warnings.append(f"{key} is not converted")


def template_to_egg(template: Template) -> dict[str, Any]:
    """The template as a PTDL_v2 egg (what Pterodactyl's panel imports)."""
    files = {
        c.path: {"parser": c.parser, "find": {k: _egg_value(v) for k, v in c.set.items()}}
        for c in template.config_files
    }
    signal = template.stop.signal.removeprefix("SIG") or "C"
    stop = template.stop.command or "^" + signal
    return {
        "_comment": "Exported by Encedeus",
        "meta": {"version": "PTDL_v2", "update_url": None},
        "exported_at": datetime.now(UTC).isoformat(),
        "name": template.name,
        "author": "encedeus@localhost",
        "description": template.description,
        "features": None,
        "docker_images": dict(template.images),
        "file_denylist": [],
        "startup": template.startup,
        "config": {
            "files": json.dumps(files),
            "startup": json.dumps({"done": _egg_done(template.done)} if template.done else {}),
            "logs": "{}",
            "stop": stop,
        },
        "scripts": {"installation": _egg_install(template)},
        "variables": [
            {
                "name": v.name or v.env,
                "description": v.description,
                "env_variable": v.env,
                "default_value": v.default,
                "user_viewable": v.user_viewable,
                "user_editable": v.user_editable,
                "rules": "|".join(rules_to_laravel(v.rules)),
                "field_type": "text",
            }
            for v in template.variables
        ],
    }


def _egg_done(pattern: str) -> str:
    # Panels match `done` literally; a regex that is no plain literal stays a regex.
    literal = literal_of(pattern)
    return literal if literal is not None else "regex:" + pattern


def _egg_value(value: str) -> str:
    names = {v: k for k, v in _PLACEHOLDERS.items() if k.startswith("server.build")}
    return re.sub(
        r"\{\{([^}]*)\}\}",
        lambda m: (
            "{{" + names.get(m.group(1), m.group(1).replace("env.", "server.build.env.", 1)) + "}}"
        ),
        value,
    )


def _egg_install(template: Template) -> dict[str, Any]:
    if template.install is None:
        return {"script": "", "container": "", "entrypoint": ""}
    return {
        "script": template.install.script,
        "container": template.install.image,
        "entrypoint": template.install.entrypoint,
    }
