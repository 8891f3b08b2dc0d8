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


def test_an_interval_saved_under_a_lower_minimum_fires_at_the_minimum_raised_since(alice, settings):
    # Given an import saved every 10 s, then MIN_INTERVAL_SECONDS raised to an hour
    from schedules.display import schedule_words
    from tests.factories import make_import

    imp = make_import(alice, "http://127.0.0.1/p.csv", interval_seconds=10)
    settings.MIN_INTERVAL_SECONDS = 3600

    # Then it fires hourly, says so and why, lists hourly ticks (it went on every 10 s and said
    # "Every 10 seconds": the minimum was read at save only)
    after = datetime(2026, 12, 2, 10, 0, 5, tzinfo=UTC)
    assert imp.next_runs(2, after=after) == [
        datetime(2026, 12, 2, 11, tzinfo=UTC),
        datetime(2026, 12, 2, 12, tzinfo=UTC),
    ]
    said = "Every hour (MIN_INTERVAL_SECONDS; the import asks for every 10 seconds)"
    assert imp.schedule_description == said and schedule_words(imp) == said
    # ... and its beat entry, once saved again, says every hour (the admin's periodic tasks
    # showed "every 10 seconds")
    imp.save()
    imp.periodic_task.refresh_from_db()
    assert imp.periodic_task.interval.every == 3600
