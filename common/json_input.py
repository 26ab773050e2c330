"""JSON from untrusted peers: one decoder for request bodies and WebSocket frames.

Python's `json` raises `RecursionError` (not `ValueError`) on deeply nested input such
as 100,000 `[`, accepts `NaN`, `Infinity` and `1e400`, and yields integers of any size that
later break a database column or a protobuf field. :func:`load_untrusted_json` turns
all of these into :class:`UntrustedJsonError` (a `ValueError`), so every caller handles
bad input with the one `except ValueError` it already has.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deeper than any body or frame of the API (the deepest is about 4 levels).
MAX_JSON_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class UntrustedJsonError(ValueError):
    """The text is not JSON this product accepts; the message says why."""


def _bounded_int(text: str) -> int:
    value = int(text)  # ValueError past Python's digit limit, too
    if not INT64_MIN <= value <= INT64_MAX:
        raise UntrustedJsonError(f"integer {text[:24]}... is out of the 64-bit range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UntrustedJsonError(f"number {text[:24]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise UntrustedJsonError(f"{name} is not a JSON number")


def _check_depth(value: Any, limit: int) -> None:
    """Walk containers iteratively (no recursion of our own) up to `limit` levels."""
    level: list[Any] = [value]
    for _ in range(limit):
        deeper: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                deeper.extend(item.values())
            elif isinstance(item, list):
                deeper.extend(item)
        if not deeper:
            return
        level = [item for item in deeper if isinstance(item, dict | list)]
        if not level:
            return
    raise UntrustedJsonError(f"JSON nested more than {limit} levels deep")


def load_untrusted_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The decoded value of `raw`; UntrustedJsonError when it is not valid JSON, nests
    deeper than `max_depth`, holds NaN/Infinity (or a float beyond it) or an integer
    outside 64 bits."""
    try:
        value = json.loads(
            raw, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant
        )
    except RecursionError as exc:
        raise UntrustedJsonError(f"JSON nested more than {max_depth} levels deep") from exc
    except UntrustedJsonError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise UntrustedJsonError(f"not valid JSON: {exc}") from exc
    _check_depth(value, max_depth)
    return value
