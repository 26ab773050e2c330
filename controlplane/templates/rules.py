"""Variable rules in the structured form both the API and the web UI check.

A rule set has a `kind` (string, integer, boolean), `required`, bounds (`min`/`max`:
the length of a string, the value of an integer), `one_of` and a `regex` written in
the subset of regular expressions that Python's `re` and JavaScript's `RegExp` read
the same way, so the browser can check a value before submitting it and the control
plane checks it again with the same meaning.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

VariableKind = Literal["string", "integer", "boolean"]
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
MAX_REGEX_LENGTH = 500
INTEGER = re.compile(r"^-?[0-9]+$")

# Constructs whose meaning differs between Python and JavaScript, or that one of them
# does not read: lookbehind, named groups (?P< / (?<name>), inline flags, possessive
# and atomic forms, \A \Z \z, \Q...\E, \p{...}, backreferences by name, and escapes of
# letters whose meaning differs (\h, \R, \K, \G, ...).
_UNPORTABLE = (
    (re.compile(r"\(\?<[=!]"), "lookbehind"),
    (re.compile(r"\(\?P?<"), "named groups"),
    (re.compile(r"\(\?[aiLmsux-]+[:)]"), "inline flags"),
    (re.compile(r"\(\?>"), "atomic groups"),
    (re.compile(r"\(\?P[=>]"), "named backreferences"),
    (re.compile(r"[*+?}][+]"), "possessive quantifiers"),
)
_PORTABLE_LETTER_ESCAPES = frozenset("dDwWsSbBnrtfv0123456789xuc")


def unportable_regex_reason(pattern: str) -> str | None:
    """Why `pattern` may not mean the same in Python and JavaScript, or None if it
    stays within the shared subset (and compiles in Python)."""
    if len(pattern) > MAX_REGEX_LENGTH:
        return f"longer than {MAX_REGEX_LENGTH} characters"
    for finder, what in _UNPORTABLE:
        if finder.search(pattern):
            return f"uses {what}, which JavaScript and Python read differently"
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\" and index + 1 < len(pattern):
            letter = pattern[index + 1]
            if letter.isalpha() and letter not in _PORTABLE_LETTER_ESCAPES:
                return f"uses the escape \\{letter}, which JavaScript and Python read differently"
            index += 2
            continue
        index += 1
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"is not a valid regular expression: {exc}"
    return None


class VariableRules(BaseModel):
    """What a variable's value must be. `min`/`max` bound a string's length or an
    integer's value; `regex` must match somewhere (anchor it with ^...$ to match all)."""

    model_config = ConfigDict(extra="forbid")

    kind: VariableKind = "string"
    required: bool = False
    min: int | None = None
    max: int | None = None
    one_of: list[str] | None = None
    regex: str | None = None

    @field_validator("regex")
    @classmethod
    def _portable(cls, value: str | None) -> str | None:
        if value is not None:
            reason = unportable_regex_reason(value)
            if reason is not None:
                raise ValueError(f"regex {reason}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VariableRules:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max})")
        if self.kind == "boolean" and (self.min is not None or self.max is not None):
            raise ValueError("a boolean has no min or max")
        return self


def check_value(rules: VariableRules, value: str) -> str | None:
    """Why `value` breaks `rules`, or None when it satisfies them. An empty value is
    accepted unless the variable is required (then it is "missing")."""
    if value == "":
        return "is required" if rules.required else None
    if rules.one_of is not None and value not in rules.one_of:
        return "must be one of " + ", ".join(rules.one_of)
    problem = _kind_problem(rules, value)
    if problem is not None:
        return problem
    if rules.regex is not None and re.search(rules.regex, value) is None:
        return f"must match {rules.regex}"
    return None


def _kind_problem(rules: VariableRules, value: str) -> str | None:
    if rules.kind == "boolean":
        if value.lower() not in TRUE_WORDS | FALSE_WORDS:
            return "must be true or false"
        return None
    if rules.kind == "integer":
        if not INTEGER.match(value):
            return "must be a whole number"
        number = int(value)
        if rules.min is not None and number < rules.min:
            return f"must be at least {rules.min}"
        if rules.max is not None and number > rules.max:
            return f"must be at most {rules.max}"
        return None
    if rules.min is not None and len(value) < rules.min:
        return f"must be at least {rules.min} characters long"
    if rules.max is not None and len(value) > rules.max:
        return f"must be at most {rules.max} characters long"
    return None
