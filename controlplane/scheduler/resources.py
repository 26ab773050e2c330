"""Kubernetes-style resource quantities as seed 004 writes them ("100m", "128Mi")."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_MEMORY_UNITS: dict[str, int] = {
    "": 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
# Far above any machine, well inside the database's integer columns.
MAX_CPU_MILLIS = 1024 * 1000  # 1024 cores
MAX_MEMORY_BYTES = 2**50  # 1 PiB
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_cpu_millis(value: str | int | float) -> int:
    """CPU as millicores: "100m" -> 100, "0.5" -> 500, 2 -> 2000. ValueError otherwise."""
    text = str(value)
    match = _QUANTITY.match(text)
    if match is None or match.group(2) not in ("", "m"):
        raise ValueError(f'invalid cpu quantity {text!r} (use e.g. "100m" or "0.5")')
    number = Decimal(match.group(1))
    millis = number if match.group(2) == "m" else number * 1000
    if millis <= 0 or millis != millis.to_integral_value():
        raise ValueError(f"invalid cpu quantity {text!r}")
    if millis > MAX_CPU_MILLIS:
        raise ValueError(f"cpu quantity {text!r} is more than {MAX_CPU_MILLIS // 1000} cores")
    return int(millis)


def parse_memory_bytes(value: str | int) -> int:
    """Memory as bytes: "128Mi" -> 134217728, "1G" -> 10**9, 4096 -> 4096."""
    text = str(value)
    match = _QUANTITY.match(text)
    if match is None or match.group(2) not in _MEMORY_UNITS:
        raise ValueError(f'invalid memory quantity {text!r} (use e.g. "128Mi")')
    try:
        amount = Decimal(match.group(1)) * _MEMORY_UNITS[match.group(2)]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise ValueError(f"invalid memory quantity {text!r}") from exc
    if amount <= 0:
        raise ValueError(f"invalid memory quantity {text!r}")
    if amount > MAX_MEMORY_BYTES:
        raise ValueError(f"memory quantity {text!r} is more than 1Pi")
    return int(amount)
