"""An import's stats add up the series' groups and read the p95 apart (lists4 hunt: one pass
over the index instead of two over a year of runs' rows); the answer is the one that one
aggregate over the runs and a GROUP BY day gave before, to the run, the millisecond and the day.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from schedules import stats
from schedules.models import ImportRun
from tests.api_support import SOURCE, make_run
from tests.factories import make_import
from tests.stats_support import stats_as_before

pytestmark = pytest.mark.django_db

# Berlin's clocks went back on 2026-10-25: a 25-hour day inside the window.
NOW = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
STATUSES = list(ImportRun.Status.values)


# Berlin went back an hour at 03:00 on 2026-10-25; Havana at 01:00 on 2026-11-01; Kolkata is
# 5:30 ahead of UTC; Santiago skipped its midnight on 2026-09-06 (as outside the window).
ZONES = ["Europe/Berlin", "America/Havana", "Asia/Kolkata", "America/Santiago", "UTC"]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("days", [1, 3, 12, 366])
def test_the_stats_are_those_one_aggregate_over_the_runs_gave(alice, days, zone):
    # Given an import with runs of every status over two weeks (across a night the clocks went
    # back), some timed without a duration, and the runs of another import
    imp = make_import(alice, SOURCE, timezone=zone)
    other = make_import(alice, SOURCE, name="other")
    runs = []
    with time_machine.travel(NOW, tick=False):
        for n in range(140):
            status = STATUSES[n % len(STATUSES)]
            if status == "retrying" or (status == "running" and n >= len(STATUSES)):
                status = "queued"  # one run of an import in progress at a time
            fields = {
                "queued_at": NOW - timedelta(hours=n * 2.4 + 0.25),
                "rows_read": n * 13,
                "rows_inserted": n % 7,
                "rows_updated": n % 5,
                "rows_unchanged": n,
                "rows_deleted": n % 3,
                "rows_failed": n % 2,
            }
            if status not in ImportRun.ACTIVE_STATUSES:
                # Ties and distinct values both, and a few runs far slower than the rest.
                fields["duration_ms"] = (
                    None if n % 11 == 0 else (997 * n) % 4099 + 10**6 * (n % 23 == 0)
                )
            runs.append(
                ImportRun(scheduled_import=imp, trigger="schedule", status=status, **fields)
            )
            runs.append(
                ImportRun(
                    scheduled_import=other,
                    trigger="schedule",
                    status="failed",
                    queued_at=fields["queued_at"],
                    duration_ms=10**9,
                )
            )
        ImportRun.objects.bulk_create(runs)

        # When its stats are asked for the last `days` days
        answer = stats.import_stats(imp, days)

    # Then every figure is the previous statements' figure
    before = stats_as_before(imp, days, NOW)
    assert answer["total"] == before["total"] > 0
    assert answer["by_status"] == before["by_status"]
    assert answer["duration_ms"] == before["duration_ms"]
    assert answer["rows"] == before["rows"]
    assert answer["daily"] == before["daily"]


def test_an_import_without_runs_in_the_window_answers_zeros_and_no_durations(alice):
    imp = make_import(alice, SOURCE)
    with time_machine.travel(NOW, tick=False):
        make_run(imp, "succeeded", queued_at=NOW - timedelta(days=40), duration_ms=5)

        answer = stats.import_stats(imp, 30)

    assert answer["total"] == 0 and set(answer["by_status"].values()) == {0}
    assert answer["duration_ms"] == {"avg": None, "p95": None}
    assert set(answer["rows"].values()) == {0}
    assert answer["success_rate"] is None


@pytest.mark.django_db(transaction=True)
def test_the_stats_read_outside_a_transaction_answer_the_same(alice):
    # Given an import's runs, and stats asked as the API asks them: outside any transaction,
    # so that the series and the p95 read one snapshot of their own
    imp = make_import(alice, SOURCE, timezone="Europe/Berlin")
    with time_machine.travel(NOW, tick=False):
        for n in range(40):
            status = "failed" if n % 4 == 0 else "succeeded"
            make_run(imp, status, queued_at=NOW - timedelta(hours=n * 7), duration_ms=n * 31)

        # When its stats are asked for the last 12 days
        answer = stats.import_stats(imp, 12)

    # Then they are the previous statements' figures
    before = stats_as_before(imp, 12, NOW)
    assert answer["total"] == before["total"] == 40
    assert answer["duration_ms"] == before["duration_ms"]
    assert answer["daily"] == before["daily"]
