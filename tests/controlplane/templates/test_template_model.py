"""The template model and its HCL format: parse, validate, write back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.templates.hcl import TemplateError, parse_template_hcl, template_to_hcl
from controlplane.templates.model import done_pattern, escape_literal
from controlplane.templates.rules import VariableRules, check_value, unportable_regex_reason

BUNDLED = Path(__file__).parents[3] / "controlplane" / "templates" / "bundled"

MINIMAL = """
id = "demo"
name = "Demo"
images = { main = "encedeus/busybox:latest" }
startup = "echo {{GREETING}} on {{SERVER_PORT}}"
"""


def with_variable(body: str) -> str:
    return MINIMAL + 'variable "GREETING" {\n' + body + "\n}\n"


def test_a_minimal_template_gets_the_defaults() -> None:
    template = parse_template_hcl(with_variable('default = "hi"'))
    assert template.data_path == "/data"
    assert template.default_image() == "encedeus/busybox:latest"
    assert template.variables[0].rules == VariableRules()
    assert template.done == ""


def test_egg_templates_mount_data_at_home_container() -> None:
    template = parse_template_hcl(with_variable("") + "egg = true\n")
    assert template.data_path == "/home/container"


def test_a_startup_placeholder_must_be_a_variable() -> None:
    with pytest.raises(TemplateError, match=r"\{\{GREETING\}\}, which is no variable"):
        parse_template_hcl(MINIMAL)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ('kind = "integer"\n min = 5\n max = 1', "min .5. is more than max .1."),
        ('regex = "(?<=a)b"', "lookbehind"),
        ('regex = "(?P<name>a)"', "named groups"),
        ('regex = "(?i)abc"', "inline flags"),
        ('regex = "\\\\Aabc"', "escape \\\\A"),
        ('regex = "a++"', "possessive"),
        ('regex = "(unclosed"', "not a valid regular expression"),
        ('kind = "float"', "kind"),
    ],
)
def test_bad_rules_are_refused_naming_the_variable(rules: str, message: str) -> None:
    text = with_variable(f'default = ""\n rules {{\n {rules}\n }}')
    with pytest.raises(TemplateError, match=message) as caught:
        parse_template_hcl(text)
    assert all(p.startswith("variable GREETING") for p in caught.value.problems)


def test_a_default_must_obey_its_rules() -> None:
    text = with_variable('default = "x"\n rules {\n kind = "integer"\n }')
    with pytest.raises(TemplateError, match=r"variable GREETING.*must be a whole number"):
        parse_template_hcl(text)


def test_unknown_keys_are_errors_not_ignored() -> None:
    with pytest.raises(TemplateError, match=r"variable GREETING\.colour"):
        parse_template_hcl(with_variable('colour = "red"'))


def test_config_files_stay_inside_the_data_directory() -> None:
    text = with_variable("") + (
        'config_file "../etc/passwd" {\n parser = "file"\n set = { root = "x" }\n}\n'
    )
    with pytest.raises(TemplateError, match=r"config file \.\./etc/passwd.*inside the data"):
        parse_template_hcl(text)


def test_config_file_placeholders_must_be_known() -> None:
    text = with_variable("") + (
        'config_file "a.ini" {\n parser = "ini"\n set = { "x.y" = "{{env.NOPE}}" }\n}\n'
    )
    with pytest.raises(TemplateError, match=r"key x.y: unknown \{\{env.NOPE\}\}"):
        parse_template_hcl(text)


@pytest.mark.parametrize(
    ("rules", "value", "problem"),
    [
        (VariableRules(required=True), "", "is required"),
        (VariableRules(), "", None),
        (VariableRules(kind="integer", min=1, max=10), "11", "must be at most 10"),
        (VariableRules(kind="integer", min=1, max=10), "0", "must be at least 1"),
        (VariableRules(kind="integer"), "1.5", "must be a whole number"),
        (VariableRules(kind="boolean"), "maybe", "must be true or false"),
        (VariableRules(kind="boolean"), "0", None),
        (VariableRules(max=3), "abcd", "must be at most 3 characters long"),
        (VariableRules(one_of=["a", "b"]), "c", "must be one of a, b"),
        (VariableRules(regex="^[a-z]+$"), "ABC", "must match ^[a-z]+$"),
        (VariableRules(regex="^[a-z]+$"), "abc", None),
    ],
)
def test_values_are_checked_against_their_rules(
    rules: VariableRules, value: str, problem: str | None
) -> None:
    assert check_value(rules, value) == problem


def test_portable_regexes_are_accepted() -> None:
    for pattern in (r"^[\w\d._-]+\.jar$", r"^\d{1,5}$", r"^(a|b)+\s*$", r"^[^/]+$"):
        assert unportable_regex_reason(pattern) is None, pattern


def test_done_patterns_escape_literal_text() -> None:
    assert done_pattern(")! For help, type ") == r"\)! For help, type "
    assert done_pattern("regex:^Done \\(") == "^Done \\("
    assert done_pattern(["a.b", "c"]) == r"a\.b|c"
    assert re.search(escape_literal("[x] (y) {z} $1 a+b"), "...[x] (y) {z} $1 a+b...")


@pytest.mark.parametrize("path", sorted(BUNDLED.glob("*.hcl")), ids=lambda p: p.stem)
def test_bundled_templates_parse_and_round_trip_through_hcl(path: Path) -> None:
    template = parse_template_hcl(path.read_text())
    assert template.id == path.stem
    assert parse_template_hcl(template_to_hcl(template)) == template


def test_heredoc_scripts_are_dedented_and_keep_literal_interpolation() -> None:
    template = parse_template_hcl((BUNDLED / "sh-game.hcl").read_text())
    assert template.install is not None
    assert template.install.script.startswith("set -e\ncd /mnt/server\n")
    assert '"[Server] ${line#say }"' in template.install.script
    assert template.done == "is ready for players"
    assert template.stop.command == "stop"


def test_the_documented_example_is_a_valid_template() -> None:
    text = (Path(__file__).parents[3] / "docs" / "templates.md").read_text()
    example = re.search(r"```hcl\n(.*?)```", text, re.DOTALL)
    assert example is not None
    template = parse_template_hcl(example.group(1))
    assert [v.env for v in template.variables] == ["WORLD_NAME", "MAX_PLAYERS", "DIFFICULTY"]
