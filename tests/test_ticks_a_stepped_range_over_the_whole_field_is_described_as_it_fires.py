"""Regression: a step over a range spanning its whole field (`0-59/45`, `0-23/5`, `1-12/5`,
`1-31/16`) or a step as long as its range (`0-23/25`) was described in cron-descriptor's words
for the rule as written, which do not say what fires (scheduler hunt, finding 5).

`*/45 * * * *` is "At 0 and 45 minutes past the hour" (the step restarts each hour), but
`0-59/45 * * * *`, firing at the very same minutes, was "Every 45 minutes, minutes 0 through 59
past the hour"; `0 0-23/25 * * *` fires daily at 00:00 and was "Every 25 hours". The API's and
the admin's `schedule_description` show these words.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schedules.ticks import Schedule


@pytest.mark.parametrize(
    ("rule", "same_as", "words"),
    [
        ("0-59/45 * * * *", "*/45 * * * *", "At 0 and 45 minutes past the hour"),
        ("0-59/15 * * * *", "*/15 * * * *", "Every 15 minutes"),
        ("0 0-23/5 * * *", "0 */5 * * *", "At 00:00, 05:00, 10:00, 15:00 and 20:00"),
        (
            "0 0 1 1-12/5 *",
            "0 0 1 */5 *",
            "At 00:00, on day 1 of the month, only in January, June, and November",
        ),
        ("0 0 1-31/16 * *", "0 0 */16 * *", "At 00:00, on day 1 and 17 of the month"),
        (
            "0 0 * * 0-6/2",
            "0 0 * * */2",
            "At 00:00, only on Sunday, Tuesday, Thursday, and Saturday",
        ),
    ],
)
def test_a_step_over_the_whole_field_is_described_as_the_same_step_over_a_star(
    rule, same_as, words
):
    ranged, starred = Schedule(cron_expression=rule), Schedule(cron_expression=same_as)
    after, until = datetime(2026, 12, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)

    # Given both fire at the same moments, then both are described in the same words
    assert ranged.ticks_between(after, until, 5000) == starred.ticks_between(after, until, 5000)
    assert ranged.describe() == starred.describe() == words


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("0 0-23/25 * * *", "At 00:00"),
        ("5-10/6 * * * *", "At 5 minutes past the hour"),
        ("5-10/5 * * * *", "At 5 and 10 minutes past the hour"),
        # (a step shorter than its range keeps cron-descriptor's words, which hold)
        ("0-30/7 * * * *", "Every 7 minutes, minutes 0 through 30 past the hour"),
    ],
)
def test_a_step_as_long_as_its_range_is_described_by_the_values_it_fires_at(rule, words):
    assert Schedule(cron_expression=rule).describe() == words
