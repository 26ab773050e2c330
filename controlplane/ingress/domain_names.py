"""Which custom domain names are acceptable: pure checks, no I/O."""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidDomain(ValueError):
    """The name cannot be a custom domain; the message says why."""


def normalise_domain(raw: str, suffix: str) -> str:
    """`raw` in its ASCII (IDNA) lower-case form without a trailing dot.

    Refused: IP literals, names of fewer than two labels or with bad labels, and the
    domain suffix itself or any name beneath it (those are the apps' own names)."""
    name = raw.strip().rstrip(".").lower()
    if not name:
        raise InvalidDomain("the domain is empty")
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidDomain("an IP address is not a domain name")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidDomain(f"not a valid domain name: {exc}") from None
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(part) for part in labels):
        raise InvalidDomain("not a valid domain name (letters, digits and hyphens per label)")
    if labels[-1].isdigit():
        raise InvalidDomain("an IP address is not a domain name")
    suffix = suffix.strip(".").lower()
    if suffix and (name == suffix or name.endswith("." + suffix)):
        raise InvalidDomain(f"names under {suffix} are the apps' own; use the app's URL")
    return name
