"""Resource quantities (CPU, memory, disk): the one parser every resource field uses.

Forms (seed 004, Kubernetes style):

- CPU: cores (`"1"`, `"0.5"`, `2`, `0.25`) or millicores (`"500m"`) → millicores.
- Memory and disk: bytes (`"1048576"`, `4096`), decimal `k`/`K`, `M`, `G`, `T` or
  binary `Ki`, `Mi`, `Gi`, `Ti` suffixes (`"128Mi"`, `"1.5G"`) → bytes.

A string is ASCII digits with at most one decimal point, optionally followed by a
unit; spaces and tabs around the number and the unit are ignored. Exponents
(`"1e3"`), signs, digits of other scripts (full-width, Arabic-Indic...) and other
whitespace are refused.
A JSON number is taken in the base unit (cores for CPU, bytes for memory and disk).

The value is first rounded UP to what Docker receives (whole millicores, which become
NanoCPUs; whole bytes), and only then checked against the minimum and maximum: a
quantity can never round down to 0, which Docker reads as "no limit".

Minimums: CPU 10m (Docker refuses fewer than 0.01 CPUs: the CFS quota cannot be
smaller than 1 ms per 100 ms period), memory 6 MiB (Docker's own floor for a memory
limit), disk 16 MiB (a loop-mounted ext4 image of a server's data needs its journal
and metadata). Maximums are far beyond any machine and well inside 64-bit columns:
1024 cores, 1 PiB of memory, 1 PiB of disk.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation

MAX_TEXT_LENGTH = 40
_QUANTITY = re.compile(r"[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*([A-Za-z]*)[ \t]*", re.ASCII)
_BYTE_UNITS: dict[str, int] = {
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


class QuantityError(ValueError):
    """A quantity that cannot be used; the message names the resource and says why."""


@dataclass(frozen=True, slots=True)
class QuantityKind:
    """One resource: its units (multipliers to the base unit), limits in the base unit,
    and how the limits read in messages."""

    name: str
    units: dict[str, int]
    minimum: int
    maximum: int
    minimum_text: str
    maximum_text: str
    example: str

    def parse(self, value: object) -> int:
        """`value` in the base unit, rounded up; QuantityError if it is not a quantity
        of this kind or lies outside [minimum, maximum] after rounding."""
        amount = self._amount(value)
        rounded = int(amount.to_integral_value(rounding=ROUND_CEILING))
        if rounded < self.minimum:
            raise QuantityError(
                f"{self.name} {_shown(value)} is less than the minimum of {self.minimum_text}"
            )
        if rounded > self.maximum:
            raise QuantityError(
                f"{self.name} {_shown(value)} is more than the maximum of {self.maximum_text}"
            )
        return rounded

    def _amount(self, value: object) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self._invalid(value)
        if isinstance(value, int):
            return Decimal(value) * self.units[""]
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self._invalid(value)
            return Decimal(repr(value)) * self.units[""]
        match = _QUANTITY.fullmatch(value) if len(value) <= MAX_TEXT_LENGTH else None
        if match is None or match.group(2) not in self.units:
            raise self._invalid(value)
        try:
            return Decimal(match.group(1)) * self.units[match.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits numbers only
            raise self._invalid(value) from exc

    def _invalid(self, value: object) -> QuantityError:
        return QuantityError(
            f"{self.name} {_shown(value)} is not a quantity (use e.g. {self.example})"
        )


def _shown(value: object) -> str:
    if isinstance(value, int) and abs(value) > 2**64:
        return "(a number beyond 64 bits)"  # repr() of a huge int is slow or refused
    text = repr(value)
    return text if len(text) <= MAX_TEXT_LENGTH + 2 else text[:MAX_TEXT_LENGTH] + "...'"


CPU = QuantityKind(
    name="cpu",
    units={"": 1000, "m": 1},
    minimum=10,
    maximum=1024 * 1000,
    minimum_text="10m (0.01 cores)",
    maximum_text="1024 cores",
    example='"500m" or "0.5"',
)
MEMORY = QuantityKind(
    name="memory",
    units=_BYTE_UNITS,
    minimum=6 * 2**20,
    maximum=2**50,
    minimum_text="6Mi",
    maximum_text="1Pi",
    example='"128Mi" or "1G"',
)
DISK = QuantityKind(
    name="disk",
    units=_BYTE_UNITS,
    minimum=16 * 2**20,
    maximum=2**50,
    minimum_text="16Mi",
    maximum_text="1Pi",
    example='"10Gi" or "500M"',
)


def parse_cpu_millis(value: object) -> int:
    """CPU as millicores: "100m" -> 100, "0.5" -> 500, 2 -> 2000 (QuantityError otherwise)."""
    return CPU.parse(value)


def parse_memory_bytes(value: object) -> int:
    """Memory as bytes: "128Mi" -> 134217728, "1G" -> 10**9 (QuantityError otherwise)."""
    return MEMORY.parse(value)


def parse_disk_bytes(value: object) -> int:
    """Disk as bytes: "10Gi" -> 10737418240 (QuantityError otherwise)."""
    return DISK.parse(value)
