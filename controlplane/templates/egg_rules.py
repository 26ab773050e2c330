"""Laravel validation rules of egg variables ("required|string|max:20") to and from
the structured :class:`VariableRules`.

What has no structured equivalent is named in the returned warnings, never dropped
silently; the variable then checks less than the panel did.
"""

from __future__ import annotations

from controlplane.templates.rules import VariableRules, unportable_regex_reason

_IGNORED = frozenset({"nullable", "sometimes", "present", "filled", "bail"})
_ALPHA = {
    "alpha": "^[A-Za-z]*$",
    "alpha_num": "^[A-Za-z0-9]*$",
    "alpha_dash": "^[A-Za-z0-9_-]*$",
}


def _split(rules: str | list[str]) -> list[str]:
    """Rules as a list. A string splits on `|`, except inside a `regex:` rule, which
    (as in Laravel) runs to the end when it is last."""
    if isinstance(rules, list):
        return [str(r).strip() for r in rules if str(r).strip()]
    parts: list[str] = []
    rest = rules
    while rest:
        if rest.startswith(("regex:", "not_regex:")):
            parts.append(rest)
            break
        head, _, rest = rest.partition("|")
        if head.strip():
            parts.append(head.strip())
    return parts


def _regex_from_laravel(value: str) -> str | None:
    """`/pattern/flags` to the bare pattern; None when flags are used."""
    if len(value) >= 2 and value[0] == "/" and value.rfind("/") > 0:
        end = value.rfind("/")
        return value[1:end] if not value[end + 1 :] else None
    return None


def rules_from_laravel(env: str, rules: str | list[str]) -> tuple[VariableRules, list[str]]:
    """The structured rules of variable `env`, with a warning per rule not carried."""
    data: dict[str, object] = {}
    warnings: list[str] = []
    for rule in _split(rules):
        name, _, argument = rule.partition(":")
        if name in _IGNORED:
            continue
        problem = _apply(data, name, argument)
        if problem is not None:
            warnings.append(f"variable {env}: rule {rule!r} {problem}")
    try:
        return VariableRules.model_validate(data), warnings
    except ValueError as exc:
        warnings.append(f"variable {env}: rules {rules!r} dropped: {exc}")
        return VariableRules(required="required" in data), warnings


def _apply(data: dict[str, object], name: str, argument: str) -> str | None:
    """Fold one rule into `data`; a reason when it cannot be carried."""
    if name == "required":
        data["required"] = True
    elif name == "string":
        data.setdefault("kind", "string")
    elif name in ("integer", "numeric", "int"):
        data["kind"] = "integer"
        return "is read as integer (no fractions)" if name == "numeric" else None
    elif name in ("boolean", "bool"):
        data["kind"] = "boolean"
    elif name in ("min", "max", "size"):
        return _bound(data, name, argument)
    elif name == "between":
        low, _, high = argument.partition(",")
        return _bound(data, "min", low) or _bound(data, "max", high)
    elif name == "in":
        data["one_of"] = [v.strip().strip('"') for v in argument.split(",")]
    elif name in _ALPHA:
        data.setdefault("regex", _ALPHA[name])
    elif name == "regex":
        return _regex(data, argument)
    else:
        return "has no equivalent and is not checked"
    return None


def _bound(data: dict[str, object], name: str, argument: str) -> str | None:
    try:
        number = int(argument.strip())
    except ValueError:
        return "has a bound that is not a whole number and is not checked"
    if name == "size":
        data["min"] = data["max"] = number
    else:
        data[name] = number
    return None


def _regex(data: dict[str, object], argument: str) -> str | None:
    pattern = _regex_from_laravel(argument)
    if pattern is None:
        return "uses regex flags and is not checked"
    reason = unportable_regex_reason(pattern)
    if reason is not None:
        return f"{reason}; not checked"
    data["regex"] = pattern
    return None


def rules_to_laravel(rules: VariableRules) -> list[str]:
    """The structured rules as Laravel rules, for export."""
    result = ["required" if rules.required else "nullable", rules.kind]
    if rules.min is not None:
        result.append(f"min:{rules.min}")
    if rules.max is not None:
        result.append(f"max:{rules.max}")
    if rules.one_of is not None:
        result.append("in:" + ",".join(rules.one_of))
    if rules.regex is not None:
        result.append(f"regex:/{rules.regex}/")
    return result
