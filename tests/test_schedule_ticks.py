"""Ticks: next runs, the tick a dispatch stands for, and DST in the import's timezone."""

from datetime import UTC, datetime

import pytest

from schedules.models import ScheduledImport


def cron(expression: str, tz: str = "UTC") -> ScheduledImport:
    return ScheduledImport(schedule_type="cron", cron_expression=expression, timezone=tz)


def test_next_runs_of_a_cron_import_follow_its_timezone_across_spring_forward():
    imp = cron("30 1 * * *", "Europe/Berlin")

    runs = imp.next_runs(3, after=datetime(2026, 3, 27, 12, tzinfo=UTC))

    # Clocks spring forward on 2026-03-29 at 02:00: 01:30 Berlin is 00:30 UTC until then,
    # and 23:30 UTC the day before once summer time holds.
    assert runs == [
        datetime(2026, 3, 28, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 23, 30, tzinfo=UTC),
    ]


def test_interval_ticks_sit_on_multiples_of_the_interval():
    imp = ScheduledImport(schedule_type="interval", interval_seconds=300)

    assert imp.next_runs(2, after=datetime(2026, 1, 1, 10, 2, 7, tzinfo=UTC)) == [
        datetime(2026, 1, 1, 10, 5, tzinfo=UTC),
        datetime(2026, 1, 1, 10, 10, tzinfo=UTC),
    ]
    assert imp.tick_for(datetime(2026, 1, 1, 10, 9, 59, 900000, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 5, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "fired_at",
    [
        datetime(2026, 6, 1, 6, 0, 0, 200000, tzinfo=UTC),
        datetime(2026, 6, 1, 6, 0, 42, tzinfo=UTC),
        datetime(2026, 6, 1, 6, 59, 59, tzinfo=UTC),
    ],
)
def test_a_late_cron_dispatch_stands_for_the_tick_before_it(fired_at):
    assert cron("0 6 * * *").tick_for(fired_at) == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)


def test_schedule_descriptions_are_human_readable():
    assert cron("30 2 * * 1-5", "Europe/Berlin").schedule_description == (
        "At 02:30, Monday through Friday (Europe/Berlin)"
    )
    interval = ScheduledImport(schedule_type="interval", interval_seconds=900)
    assert interval.schedule_description == "Every 15 minutes"
