"""An import's stats count each run on the local day PostgreSQL's own calendar gives it, at
every edge: a run queued at a local midnight to the microsecond, or a microsecond before it,
on days of 23, 23.5, 24.5 and 25 hours (New York, Berlin, Lord Howe's half-hour change,
Santiago's and Beirut's changes at midnight), in windows of one day to 366 (reviewD: the
series are read by ranges between local midnights Python computes, where the previous release
grouped by the day PostgreSQL converted each run to).
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection

from schedules import stats
from schedules.models import ImportRun
from tests.api_support import SOURCE
from tests.factories import make_import
from tests.stats_support import stats_as_before

pytestmark = pytest.mark.django_db

STATUSES = [s for s in ImportRun.Status.values if s not in ImportRun.ACTIVE_STATUSES]
QUARTER_HOUR = timedelta(minutes=15)
MICROSECOND = timedelta(microseconds=1)


def clock_changes(zone: str, year: int) -> list[datetime]:
    """The instants (UTC) the zone's clocks changed in `year`, to the minute."""
    tz, changes = ZoneInfo(zone), []
    moment = datetime(year, 1, 1, tzinfo=UTC)
    while moment.year == year:
        later = moment + timedelta(hours=1)
        if moment.astimezone(tz).utcoffset() != later.astimezone(tz).utcoffset():
            while later - moment > timedelta(minutes=1):
                middle = moment + (later - moment) / 2
                if moment.astimezone(tz).utcoffset() == middle.astimezone(tz).utcoffset():
                    moment = middle
                else:
                    later = middle
            changes.append(later.replace(second=0, microsecond=0))
        moment = later
    return changes


def local_midnights(zone: str, first: datetime, last: datetime) -> list[datetime]:
    """Every local midnight between two instants, as PostgreSQL's calendar has them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (d::date::timestamp AT TIME ZONE %(zone)s) FROM generate_series("
            " (%(first)s AT TIME ZONE %(zone)s)::date - 1,"
            " (%(last)s AT TIME ZONE %(zone)s)::date + 1, interval '1 day') AS d",
            {"zone": zone, "first": first, "last": last},
        )
        return [moment for (moment,) in cursor.fetchall()]


def run(imp, n: int, queued_at: datetime) -> ImportRun:
    status = STATUSES[n % len(STATUSES)]
    return ImportRun(
        scheduled_import=imp,
        trigger="schedule",
        status=status,
        queued_at=queued_at,
        # Every status has a duration now and then (skipped and cancelled ones too: they must
        # not count), some timed runs have none.
        duration_ms=None if n % 13 == 0 else (n * 7919) % 10007,
        rows_read=n % 101,
        rows_failed=n % 3,
    )


ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Beirut",
]


@pytest.mark.parametrize("change", [0, 1], ids=["first change", "second change"])
@pytest.mark.parametrize("days", [1, 2, 4])
@pytest.mark.parametrize("zone", ZONES)
def test_runs_at_and_around_local_midnights_count_on_postgresqls_day(alice, zone, days, change):
    # Given an import in `zone` with a run every quarter of an hour and a microsecond before
    # each, over the days around a change of its clocks, and at each local midnight
    imp = make_import(alice, SOURCE, timezone=zone)
    moment = clock_changes(zone, 2026)[change]
    # Now: the change's local day or the days after it, at an odd minute.
    now = moment + timedelta(days=days - 1, hours=5, minutes=7)
    start = moment - timedelta(days=days + 2)
    instants = []
    while start <= now + timedelta(hours=6):
        instants += [start, start - MICROSECOND]
        start += QUARTER_HOUR
    for midnight in local_midnights(zone, moment - timedelta(days=days + 2), now):
        instants += [midnight, midnight - MICROSECOND, midnight + MICROSECOND]
    instants += [now, now + MICROSECOND]
    ImportRun.objects.bulk_create(run(imp, n, at) for n, at in enumerate(instants))

    # When its stats are asked for the last `days` days
    with time_machine.travel(now, tick=False):
        answer = stats.import_stats(imp, days, now)

    # Then each figure, each day's above all, is the previous release's
    before = stats_as_before(imp, days, now)
    assert answer["since"] == before["since"]
    assert answer["daily"] == before["daily"]
    assert answer["total"] == before["total"] > 0
    assert answer["by_status"] == before["by_status"]
    assert answer["duration_ms"] == before["duration_ms"]
    assert answer["rows"] == before["rows"]


@pytest.mark.parametrize("zone", ZONES)
def test_a_year_of_runs_at_each_local_midnight_counts_as_before(alice, zone):
    # Given runs at each local midnight of a year and more (and a microsecond either side),
    # and at noon
    imp = make_import(alice, SOURCE, timezone=zone)
    now = datetime(2026, 12, 7, 16, 45, tzinfo=UTC)
    instants = []
    for midnight in local_midnights(zone, now - timedelta(days=368), now):
        instants += [midnight - MICROSECOND, midnight, midnight + MICROSECOND]
        instants.append(midnight + timedelta(hours=12))
    ImportRun.objects.bulk_create(
        run(imp, n, at) for n, at in enumerate(instants) if at <= now + timedelta(days=1)
    )

    # When the stats of 366 days are asked
    with time_machine.travel(now, tick=False):
        answer = stats.import_stats(imp, 366, now)

    # Then they are the previous release's, day by day
    before = stats_as_before(imp, 366, now)
    assert answer["daily"] == before["daily"]
    assert answer["total"] == before["total"] > 366 * 3
    assert answer["by_status"] == before["by_status"]
    assert answer["duration_ms"] == before["duration_ms"]
    assert answer["rows"] == before["rows"]


def test_an_import_that_never_ran_answers_zeros_and_no_durations(alice):
    imp = make_import(alice, SOURCE, timezone="Australia/Lord_Howe")

    answer = stats.import_stats(imp, 366)

    assert answer["total"] == 0 and set(answer["by_status"].values()) == {0}
    assert answer["duration_ms"] == {"avg": None, "p95": None}
    assert len(answer["daily"]) == 366 and {day["total"] for day in answer["daily"]} == {0}
