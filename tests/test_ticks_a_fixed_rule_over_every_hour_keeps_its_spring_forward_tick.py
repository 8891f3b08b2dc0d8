"""Regression: a fixed-time rule whose hour field names every hour without a leading `*`
(`30 0-23 * * *`, `30 0/1 * * *`, `30 0-11,12-23 * * *`) lost the tick the spring-forward
jump skips (scheduler hunt, finding 2).

Vixie cron runs a fixed-time job (neither the minute nor the hour starts with `*`) soon after
the jump for the times the jump skipped, as `30 1 * * *` did; these rules listed and fired
00:30 GMT then 02:30 BST in Europe/London on 2026-03-29, with no run for 01:30. croniter moved
a skipped time into the jump only for an hour field it did not read as `*`, and it reads a range
over every hour as `*`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules.ticks import Schedule

LONDON = ZoneInfo("Europe/London")
# 2026-03-29 01:00 GMT becomes 02:00 BST
JUMP = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "expected", "before_the_jump"),
    [
        # (the behaviour the others are held to)
        ("30 1 * * *", ["02:00 BST"], "01:30 GMT"),
        ("30 0-23 * * *", ["00:30 GMT", "02:00 BST", "02:30 BST", "03:30 BST"], "00:30 GMT"),
        ("30 0/1 * * *", ["00:30 GMT", "02:00 BST", "02:30 BST", "03:30 BST"], "00:30 GMT"),
        ("30 0-11,12-23 * * *", ["00:30 GMT", "02:00 BST", "02:30 BST", "03:30 BST"], "00:30 GMT"),
    ],
)
def test_the_skipped_half_past_one_runs_at_the_jump(rule, expected, before_the_jump):
    schedule = Schedule(cron_expression=rule, timezone="Europe/London")

    listed = schedule.ticks_between(JUMP - timedelta(hours=1), JUMP + timedelta(hours=2), 10)

    # Given 01:30 GMT does not exist, when the rule names it, then it runs at 02:00 BST
    assert [in_london(tick) for tick in listed] == expected
    # ... and a dispatch soon after the jump stands for that tick (beat, reconciliation)
    assert schedule.tick_at_or_before(JUMP + timedelta(seconds=59)) == JUMP
    assert in_london(schedule.tick_at_or_before(JUMP - timedelta(seconds=1))) == before_the_jump


def in_london(tick: datetime) -> str:
    return tick.astimezone(LONDON).strftime("%H:%M %Z")


def test_a_fixed_rule_over_every_hour_runs_the_repeated_half_past_one_once():
    # (it is a fixed-time job in autumn too: the first 01:30 only)
    schedule = Schedule(cron_expression="30 0-23 * * *", timezone="Europe/London")

    listed = schedule.ticks_between(
        datetime(2026, 10, 24, 23, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 45, tzinfo=UTC), 10
    )

    assert [in_london(tick) for tick in listed] == ["00:30 BST", "01:30 BST", "02:30 GMT"]


def test_a_skipped_minute_of_a_fixed_rule_runs_at_the_chatham_islands_jump():
    # Pacific/Chatham jumps from 02:45 to 03:45 (+12:45 to +13:45) on 2026-09-27: the skipped
    # 03:06-03:15 run at the jump. The hunt's fuzz found this rule (its hour field reads as
    # every hour to croniter) losing them
    schedule = Schedule(cron_expression="6-15 0-9,1/1,9-22 * * *", timezone="Pacific/Chatham")
    chatham = ZoneInfo("Pacific/Chatham")
    jump = datetime(2026, 9, 27, 2, 45, tzinfo=chatham).astimezone(UTC)  # 03:45 +13:45

    listed = schedule.ticks_between(jump - timedelta(hours=1), jump + timedelta(hours=1), 50)

    shown = [tick.astimezone(chatham).strftime("%H:%M") for tick in listed]
    assert shown == [f"02:{m:02}" for m in range(6, 16)] + ["03:45"] + [
        f"04:{m:02}" for m in range(6, 16)
    ]
