"""Regression: in Australia/Lord_Howe (a 30-minute DST shift), wildcard rules such as `*/7`,
`10,35` and `14-38` dropped minutes of the repeated half hour (scheduler hunt, finding 3).

On 2026-04-05 at 02:00 (+11) the clocks go back to 01:30 (+10:30). A wildcard job (minute or
hour starting with `*`) runs by the new time, through the repeat again, and `*/5 * * * *` did;
but after the last minute a rule named before the change, croniter's next match was 02:xx,
past the repeat: `*/7` had no second 01:35/01:42/01:49/01:56, `10,35` no second 01:35.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules.ticks import Schedule

LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
# 02:00 +11 on 2026-04-05: the first 01:30-01:59 (+11) is 14:30-14:59 UTC the day before, the
# second (+10:30) 15:00-15:29 UTC
BACK = datetime(2026, 4, 4, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rule", "in_each_pass"),
    [
        ("*/5 * * * *", [30, 35, 40, 45, 50, 55]),
        ("*/7 * * * *", [35, 42, 49, 56]),
        ("10,35 * * * *", [35]),
        ("14-38 * * * *", list(range(30, 39))),
        ("*/9,3-46,0-26 * * * *", [*range(30, 47), 54]),
    ],
)
def test_each_named_minute_of_the_repeated_half_hour_runs_twice(rule, in_each_pass):
    schedule = Schedule(cron_expression=rule, timezone="Australia/Lord_Howe")
    first_pass = [BACK - timedelta(minutes=60 - minute) for minute in in_each_pass]
    second_pass = [BACK + timedelta(minutes=minute - 30) for minute in in_each_pass]

    # (listed from before the change: croniter's walk from the first pass skipped the second)
    listed = schedule.ticks_between(
        BACK - timedelta(minutes=30, seconds=1), BACK + timedelta(minutes=29, seconds=59), 100
    )

    assert listed == first_pass + second_pass
    # A dispatch in either pass stands for that pass's tick (beat's late dispatch, catch-up)
    for tick in first_pass + second_pass:
        assert schedule.tick_at_or_before(tick + timedelta(seconds=59)) == tick


def test_a_fixed_rule_runs_the_repeated_half_hour_once():
    # (fixed-time jobs run the first pass only: this held before and holds)
    schedule = Schedule(cron_expression="35 1 * * *", timezone="Australia/Lord_Howe")

    listed = schedule.ticks_between(BACK - timedelta(hours=1), BACK + timedelta(hours=1), 10)

    assert listed == [BACK - timedelta(minutes=25)]
    assert schedule.tick_at_or_before(BACK + timedelta(minutes=10)) == BACK - timedelta(minutes=25)
