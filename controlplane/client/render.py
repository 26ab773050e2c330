"""Output for people: aligned tables, short ids, ages."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

Column = tuple[str, Callable[[Mapping[str, Any]], object]]


def short_id(value: object) -> str:
    """The first 8 characters of an id (enough to tell rows apart)."""
    return str(value or "")[:8]


def age(timestamp: object, now: datetime | None = None) -> str:
    """How long ago an ISO 8601 timestamp was, as `5s`, `3m`, `2h`, `4d` ("-" if none)."""
    if not timestamp:
        return "-"
    try:
        moment = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    except ValueError:
        return str(timestamp)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], out: TextIO) -> None:
    """Print `rows` under the column headers, each column as wide as its widest cell."""
    cells = [[_cell(getter(row)) for _, getter in columns] for row in rows]
    headers = [name for name, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for line in [headers, *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        out.write("\n")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def field(name: str) -> Callable[[Mapping[str, Any]], object]:
    """A column getter reading `name` (dotted for nested objects)."""

    def get(row: Mapping[str, Any]) -> object:
        value: Any = row
        for part in name.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    return get
