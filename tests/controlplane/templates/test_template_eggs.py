"""Pterodactyl and Pelican eggs to templates and back; nothing dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.templates.eggs import (
    egg_to_template,
    looks_like_egg,
    parse_egg_text,
    template_to_egg,
)
from controlplane.templates.hcl import TemplateError
from controlplane.templates.rules import VariableRules

EGGS = Path(__file__).parent / "eggs"


def load(name: str) -> dict[str, object]:
    return parse_egg_text((EGGS / name).read_text())


def test_a_pterodactyl_egg_converts_with_the_egg_contract() -> None:
    data = load("egg-paper.json")
    assert looks_like_egg(data)
    template, warnings = egg_to_template(data)
    assert template.id == "paper"
    assert template.egg
    assert template.data_path == "/home/container"
    assert list(template.images) == ["Java 21", "Java 17", "Java 11"]
    assert template.startup.endswith("-jar {{SERVER_JARFILE}}")
    assert template.done == r"\)! For help, type "
    assert template.stop.command == "stop"
    assert template.install is not None
    assert template.install.image == "ghcr.io/pterodactyl/installers:alpine"
    assert template.install.entrypoint == "ash"
    assert "\r" not in template.install.script
    assert template.install.network
    [properties] = template.config_files
    assert properties.parser == "properties"
    assert properties.set == {
        "server-ip": "0.0.0.0",
        "server-port": "{{server.port}}",
        "query.port": "{{server.port}}",
    }
    jar = template.variable("SERVER_JARFILE")
    assert jar is not None
    assert jar.rules == VariableRules(required=True, regex=r"^([\w\d._-]+)(\.jar)$")
    version = template.variable("MINECRAFT_VERSION")
    assert version is not None
    assert version.rules == VariableRules(max=20)
    download = template.variable("DL_PATH")
    assert download is not None
    assert not download.user_viewable
    assert not download.user_editable
    assert warnings == [
        "features eula, java_version, pid_limit are panel UI features and are not converted"
    ]


def test_a_pelican_yaml_egg_converts_and_names_what_it_leaves() -> None:
    template, warnings = egg_to_template(load("egg-valheim.yaml"))
    assert template.id == "valheim"
    assert template.startup.startswith("./valheim_server.x86_64 -nographics -batchmode -name")
    assert template.done == "Game server connected"
    assert template.stop.signal == "SIGINT"
    assert template.install is not None
    assert template.install.entrypoint == "bash"
    rules = {v.env: v.rules for v in template.variables}
    assert rules["SERVER_NAME"] == VariableRules(required=True, max=64)
    assert rules["PASSWORD"] == VariableRules(required=True, min=5)
    assert rules["WORLD"] == VariableRules(required=True, max=32, regex="^[A-Za-z0-9_-]*$")
    assert rules["PUBLIC_SERVER"] == VariableRules(kind="boolean", required=True)
    assert rules["SRCDS_APPID"] == VariableRules(required=True, one_of=["896660"])
    assert rules["MAX_PLAYERS"] == VariableRules(kind="integer", required=True, min=1, max=64)
    assert (
        "startup_commands: only the first (Default) is used; not converted: Crossplay" in warnings
    )
    assert any(w.startswith("features steam_disk_space") for w in warnings)


def test_rules_without_an_equivalent_are_named() -> None:
    data = load("egg-paper.json")
    variables = data["variables"]
    assert isinstance(variables, list)
    variables[0]["rules"] = "required|string|url|regex:/^a/i"
    template, warnings = egg_to_template(data)
    assert "variable MINECRAFT_VERSION: rule 'url' has no equivalent and is not checked" in warnings
    assert (
        "variable MINECRAFT_VERSION: rule 'regex:/^a/i' uses regex flags and is not checked"
        in warnings
    )
    version = template.variable("MINECRAFT_VERSION")
    assert version is not None
    assert version.rules == VariableRules(required=True)


def test_unsupported_parsers_and_placeholders_are_named() -> None:
    data = load("egg-paper.json")
    config = data["config"]
    assert isinstance(config, dict)
    config["files"] = json.dumps(
        {
            "config.xml": {"parser": "xml", "find": {"a": "b"}},
            "config.yml": {
                "parser": "yaml",
                "find": {
                    "listeners[0].host": "0.0.0.0:{{server.build.default.port}}",
                    "ip": "{{config.docker.interface}}",
                    "motd": {"old": "new"},
                    "jar": "{{server.build.env.SERVER_JARFILE}}",
                },
            },
        }
    )
    template, warnings = egg_to_template(data)
    assert "config file config.xml: parser 'xml' is not supported" in warnings
    assert (
        "config file config.yml, key ip: placeholder {{config.docker.interface}} is unknown "
        "and was left out" in warnings
    )
    assert (
        "config file config.yml, key motd: conditional replacements are not supported" in warnings
    )
    [yml] = template.config_files
    assert yml.set["listeners[0].host"] == "0.0.0.0:{{server.port}}"
    assert yml.set["jar"] == "{{env.SERVER_JARFILE}}"


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("^C", {"signal": "SIGINT"}),
        ("^SIGTERM", {"signal": "SIGTERM"}),
        ("^HUP", {"signal": "SIGHUP"}),
        ("end", {"command": "end"}),
    ],
)
def test_stop_conventions(stop: str, expected: dict[str, str]) -> None:
    data = load("egg-paper.json")
    config = data["config"]
    assert isinstance(config, dict)
    config["stop"] = stop
    template, _ = egg_to_template(data)
    assert template.stop.model_dump(include=set(expected)) == expected


def test_an_egg_without_image_or_startup_is_refused() -> None:
    with pytest.raises(TemplateError, match="no docker image"):
        egg_to_template({"name": "x", "startup": "run"})
    with pytest.raises(TemplateError, match="no startup command"):
        egg_to_template({"name": "x", "docker_images": {"a": "b"}})
    with pytest.raises(TemplateError, match="neither JSON nor YAML"):
        parse_egg_text("{ not: [json")


@pytest.mark.parametrize("name", ["egg-valheim.yaml", "egg-paper.json"])
def test_export_to_ptdl_v2_imports_back_equal(name: str) -> None:
    template, _ = egg_to_template(load(name))
    egg = json.loads(json.dumps(template_to_egg(template)))
    assert egg["meta"]["version"] == "PTDL_v2"
    again, _ = egg_to_template(egg, template_id=template.id)
    assert again.model_dump(exclude={"version"}) == template.model_dump(exclude={"version"})
