"""Backup schedules (cron) and retention: pure rules, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.backups.cron import CronError, parse_cron
from controlplane.backups.retention import BackupAge, Retention, expired


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "fires"),
    [
        ("*/15 * * * *", "2026-12-02T08:07:30", "2026-12-02T08:15:00"),
        ("0 3 * * *", "2026-12-02T03:00:00", "2026-12-03T03:00:00"),
        ("30 4 * * 1-5", "2026-12-04T05:00:00", "2026-12-07T04:30:00"),  # Fri -> Mon
        ("0 0 * * 7", "2026-12-02T00:00:00", "2026-12-06T00:00:00"),  # 7 is Sunday
        ("0 0 1 * 1", "2026-12-02T00:00:00", "2026-12-07T00:00:00"),  # 1st OR Monday
        ("0 12 29 2 *", "2026-03-01T00:00:00", "2028-02-29T12:00:00"),
        ("@daily", "2026-12-02T08:00:00", "2026-12-03T00:00:00"),
        ("5,10 9-10 * * *", "2026-12-02T09:07:00", "2026-12-02T09:10:00"),
    ],
)
def test_next_run(schedule: str, after: str, fires: str) -> None:
    assert parse_cron(schedule).next_after(at(after)) == at(fires)


def test_impossible_date_never_fires() -> None:
    assert parse_cron("0 0 31 2 *").next_after(at("2026-01-01T00:00:00")) is None


@pytest.mark.parametrize(
    ("schedule", "field"),
    [("* * * *", "five fields"), ("60 * * * *", "minute"), ("* 24 * * *", "hour"),
     ("* * 0 * *", "day of month"), ("* * * 13 *", "month"), ("* * * * 8", "day of week"),
     ("*/0 * * * *", "minute"), ("a * * * *", "minute"), ("5-1 * * * *", "minute")],
)  # fmt: skip
def test_bad_schedules_name_their_field(schedule: str, field: str) -> None:
    with pytest.raises(CronError, match=field):
        parse_cron(schedule)


def _daily(days: int, *, locked: set[int] | None = None) -> list[BackupAge]:
    start = at("2026-11-01T06:00:00")
    return [
        BackupAge(f"b{i}", start + timedelta(days=i), locked=i in (locked or set()))
        for i in range(days)
    ]


def test_no_rule_keeps_everything() -> None:
    assert expired(_daily(10), Retention()) == []


def test_keep_last() -> None:
    assert expired(_daily(5), Retention(keep_last=2)) == ["b0", "b1", "b2"]


def test_locked_backups_stay_and_count_for_no_rule() -> None:
    gone = expired(_daily(5, locked={0, 4}), Retention(keep_last=2))
    assert gone == ["b1"]


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    start = at("2026-11-01T01:00:00")
    backups = [BackupAge(f"d{d}h{h}", start + timedelta(days=d, hours=h)) for d in range(3)
               for h in (0, 5)]  # fmt: skip
    assert sorted(expired(backups, Retention(keep_daily=2))) == ["d0h0", "d0h5", "d1h0", "d2h0"]


def test_rules_add_up() -> None:
    # 21 daily backups from Sunday 1 November: the last 2 and the newest of 3 days
    # (b18-b20), the newest of 3 ISO weeks (Saturday b20, Sundays b14 and b7).
    kept = {b.id for b in _daily(21)} - set(
        expired(_daily(21), Retention(keep_last=2, keep_daily=3, keep_weekly=3))
    )
    assert kept == {"b20", "b19", "b18", "b14", "b7"}
