"""Which backups a retention policy lets go (pure), with restic's `forget` meaning:
`keep_last` N newest; `keep_daily` the newest of each of the N latest days that have
a backup; `keep_weekly` the same per ISO week. A backup kept by any rule stays.
Locked backups always stay and count for no rule; with no rule set, every backup
stays.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Retention:
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None

    @property
    def keeps_all(self) -> bool:
        return self.keep_last is None and self.keep_daily is None and self.keep_weekly is None


@dataclass(frozen=True, slots=True)
class BackupAge:
    """What retention needs of a completed backup."""

    id: str
    taken_at: datetime
    locked: bool = False


def _newest_per(
    backups: Sequence[BackupAge], period: Callable[[datetime], Hashable], count: int
) -> set[str]:
    kept: set[str] = set()
    seen: set[Hashable] = set()
    for backup in backups:  # newest first
        key = period(backup.taken_at)
        if key in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(key)
        kept.add(backup.id)
    return kept


def expired(backups: Sequence[BackupAge], retention: Retention) -> list[str]:
    """Ids of the backups `retention` lets go, oldest first."""
    if retention.keeps_all:
        return []
    candidates = sorted((b for b in backups if not b.locked), key=lambda b: b.taken_at)
    candidates.reverse()
    kept: set[str] = set()
    if retention.keep_last:
        kept |= {b.id for b in candidates[: retention.keep_last]}
    if retention.keep_daily:
        kept |= _newest_per(candidates, lambda t: t.date(), retention.keep_daily)
    if retention.keep_weekly:
        kept |= _newest_per(candidates, lambda t: t.isocalendar()[:2], retention.keep_weekly)
    return [b.id for b in reversed(candidates) if b.id not in kept]
