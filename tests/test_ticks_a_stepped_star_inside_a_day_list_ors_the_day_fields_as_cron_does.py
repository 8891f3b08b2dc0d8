"""A day field whose list holds a stepped `*` after its first item (`1,*/2`) is OR'ed with the
other day field, as cron ORs them when neither starts with `*`.

Regression (ticks hunt, found by the per-minute model of cron over random rules and zones):
croniter, finding a `*` anywhere in one day field, read the other field naming every day as `*`
and ANDed the two. `0 0 1,*/2 * 0-6` (the 1st and odd days, or any weekday: every day, as cron
runs it) was listed and fired on odd days alone, and `0 0 1-31 * 1,*/3` (every day) on Sundays,
Mondays, Wednesdays and Saturdays alone. A `*/2` leading its field still makes cron AND them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schedules.ticks import Schedule

MONDAY = datetime(2026, 4, 27, tzinfo=UTC)
EVERY_DAY = [MONDAY + timedelta(days=day) for day in range(7)]


@pytest.mark.parametrize(
    ("rule", "days"),
    [
        ("0 0 1,*/2 * 0-6", range(7)),  # every weekday named: every day
        ("0 0 1,*/2 * 0-7/1", range(7)),
        ("0 0 1-31 * 1,*/3", range(7)),  # every day of the month named: every day
        ("0 0 1,*/2 * 2", [0, 1, 2, 4, 6]),  # 27, 29, 1 and 3 May (odd), or Tuesday the 28th
        ("0 0 15 * 2,*/3", [1, 2, 5, 6]),  # Tuesday, or Sunday, Wednesday, Saturday
        ("0 0 */2 * 0-6", [0, 2, 4, 6]),  # leading `*`: ANDed, odd days alone
    ],
)
def test_a_stepped_star_inside_a_day_list_fires_the_days_cron_fires(rule, days):
    schedule = Schedule(cron_expression=rule)

    listed = schedule.ticks_between(MONDAY - timedelta(seconds=1), EVERY_DAY[-1], 10)

    assert listed == [EVERY_DAY[day] for day in days], [f"{tick:%a %d}" for tick in listed]
    # What beat fires: each next tick from the last one fired.
    assert [schedule.next_after(tick) for tick in listed[:-1]] == listed[1:]
