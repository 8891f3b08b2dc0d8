"""Completeness over DST changes: the ticks listed are exactly the minutes a per-minute model
of Vixie cron fires, none missing and none extra, and a dispatch at any moment stands for the
newest of them.

Regression for the scheduler hunt's findings 2 and 3: a fixed rule over every hour
(`30 0-23 * * *`) lost its spring-forward tick, and wildcard rules lost minutes of Lord Howe's
repeated half hour. The property test of shown-versus-fired ticks checks each listed tick
only; it could not see a tick missing.

The model steps through every real minute. A wildcard job (minute or hour starting with `*`)
fires where the local wall minute is named, in a repeated hour twice; a fixed-time job fires
at the first pass of a named wall minute, and at the first minute after a jump forward when
the jump skipped a named one (as schedules.ticks documents).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules.ticks import Schedule

RULES = [
    "30 1 * * *", "30 2 * * *", "0 0 * * *", "45 23 * * *",  # fixed
    "30 0-23 * * *", "30 0/1 * * *", "15,45 0-11,12-23 * * *", "6-15 0-9,1/1,9-22 * * *",
    "*/5 * * * *", "*/7 * * * *", "10,35 * * * *", "14-38 * * * *",  # wildcard
    "*/30 2 * * *", "*/15 1-3 * * *", "* * * * *", "24 4-20/3,10-23/1,*/1 * * *",
    "0 12 * * 5", "0 12 30 * *",  # days (Apia skipped its 30 December 2011, a Friday)
]  # fmt: skip
# (zone, a moment of its DST change): both changes where the zone has them
CHANGES = [
    ("Europe/London", datetime(2026, 3, 29, 1, tzinfo=UTC)),
    ("Europe/London", datetime(2026, 10, 25, 1, tzinfo=UTC)),
    ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, tzinfo=UTC)),  # 30 minutes
    ("Australia/Lord_Howe", datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
    ("Pacific/Chatham", datetime(2026, 4, 4, 14, tzinfo=UTC)),  # at 03:45
    ("Pacific/Chatham", datetime(2026, 9, 26, 14, tzinfo=UTC)),
    ("America/Santiago", datetime(2026, 4, 5, 3, tzinfo=UTC)),  # at midnight
    ("America/Santiago", datetime(2026, 9, 6, 4, tzinfo=UTC)),
    ("Pacific/Apia", datetime(2011, 12, 30, 10, tzinfo=UTC)),  # a whole day skipped
]
AROUND = timedelta(hours=8)


def naming(rule: str) -> Callable[[datetime], bool]:
    """Whether a wall time is one the rule names (the fields read independently of croniter)."""
    minute, hour, dom, month, dow = rule.split()

    def values(field: str, low: int, high: int) -> set[int]:
        found: set[int] = set()
        for atom in field.split(","):
            base, _, step = atom.partition("/")
            first, _, last = base.partition("-")
            start = low if base == "*" else int(first)
            end = high if base == "*" or (step and not last) else int(last or first)
            found.update(range(start, end + 1, int(step or 1)))
        return found

    minutes, hours, months = values(minute, 0, 59), values(hour, 0, 23), values(month, 1, 12)
    days, weekdays = values(dom, 1, 31), {day % 7 for day in values(dow, 0, 7)}
    either = not (dom.startswith("*") or dow.startswith("*"))

    def named(wall: datetime) -> bool:
        on_dom, on_dow = wall.day in days, wall.isoweekday() % 7 in weekdays
        return (
            wall.minute in minutes
            and wall.hour in hours
            and wall.month in months
            and ((on_dom or on_dow) if either else (on_dom and on_dow))
        )

    return named


def fired_by_the_model(rule: str, zone: ZoneInfo, start: datetime, end: datetime):
    """The real minutes in (start, end] at which Vixie cron runs `rule`."""
    named = naming(rule)
    wildcard = rule.split()[0].startswith("*") or rule.split()[1].startswith("*")
    fired = []
    moment = start + timedelta(minutes=1)
    previous = start.astimezone(zone).replace(tzinfo=None, fold=0)
    while moment <= end:
        wall = moment.astimezone(zone).replace(tzinfo=None, fold=0)
        if wildcard:
            fires = named(wall)
        else:
            first_pass = wall.replace(tzinfo=zone).astimezone(UTC) == moment
            skipped = (previous + timedelta(minutes=m) for m in range(1, _minutes(wall - previous)))
            fires = (named(wall) and first_pass) or any(named(w) for w in skipped)
        if fires:
            fired.append(moment)
        previous, moment = wall, moment + timedelta(minutes=1)
    return fired


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds()) // 60


@pytest.mark.parametrize(("zone_name", "change"), CHANGES)
def test_listed_ticks_are_the_minutes_cron_fires_around_a_dst_change(zone_name, change):
    zone = ZoneInfo(zone_name)
    for rule in RULES:
        schedule = Schedule(cron_expression=rule, timezone=zone_name)
        # The model starts a day early, so that the newest tick before most moments is known
        fired = fired_by_the_model(rule, zone, change - AROUND - timedelta(days=1), change + AROUND)

        listed = schedule.ticks_between(change - AROUND, change + AROUND, 10_000)

        expected = [tick for tick in fired if tick > change - AROUND]
        missing, extra = sorted(set(expected) - set(listed)), sorted(set(listed) - set(expected))
        assert listed == expected, (rule, zone_name, "missing", missing, "extra", extra)
        moment = change - AROUND
        while moment <= change + AROUND:
            for late in (timedelta(0), timedelta(seconds=1), timedelta(seconds=59)):
                newer = bisect.bisect_right(fired, moment + late)
                if newer:  # (the model knows the newest tick before this moment)
                    newest = fired[newer - 1]
                    assert schedule.tick_at_or_before(moment + late) == newest, (rule, moment)
            moment += timedelta(minutes=11)
