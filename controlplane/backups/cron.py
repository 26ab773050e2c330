"""Backup schedules in cron syntax (pure): `minute hour day-of-month month day-of-week`,
in UTC, each field `*`, `N`, `A-B`, `*/S`, `A-B/S` or a comma list of those (day of
week 0-7, 0 and 7 being Sunday), and the shorthands `@hourly`, `@daily`,
`@weekly`, `@monthly`. As in cron, when both day fields are restricted a day matching
either one matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")
#: How far ahead a schedule is searched (a 29 February schedule fires within 8 years).
_SEARCH_DAYS = 366 * 8


class CronError(ValueError):
    """A schedule that is not valid cron syntax; the message says which field."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed schedule; :meth:`next_after` is the next time it fires."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def _day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, moment: datetime) -> datetime | None:
        """The first time strictly after `moment` (aware, UTC) that the schedule
        fires; None when it never does (31 February)."""
        start = moment.replace(second=0, microsecond=0)
        day = start.replace(hour=0, minute=0)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate > moment:
                            return candidate
            day += timedelta(days=1)
        return None


def _field(text: str, index: int) -> set[int]:
    low, high = _RANGES[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                first, last = low, high
            elif "-" in body:
                first_text, last_text = body.split("-", 1)
                first, last = int(first_text), int(last_text)
            else:
                first = int(body)
                last = high if step_text else first
        except ValueError:
            raise CronError(f"{_NAMES[index]}: {part!r} is not a number, range or step") from None
        if step < 1 or not low <= first <= last <= high:
            raise CronError(f"{_NAMES[index]}: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


def parse_cron(text: str) -> CronSchedule:
    """Parse a schedule; CronError names the field that is wrong."""
    expression = SHORTHANDS.get(text.strip().lower(), text.strip())
    fields = expression.split()
    if len(fields) != 5:
        raise CronError("a schedule has five fields: minute hour day-of-month month day-of-week")
    minutes, hours, days, months, weekdays = (_field(f, i) for i, f in enumerate(fields))
    return CronSchedule(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(d % 7 for d in weekdays),
        any_day=fields[2] == "*",
        any_weekday=fields[4] == "*",
    )
