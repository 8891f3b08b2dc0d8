"""A failure streak the previous release alerted on is not alerted again after the upgrade
(migration 0039).

Bug (upgrade hunt): releases before 92f909c alerted when `consecutive_failures` equalled
`alert_after_failures` and marked nothing on the run; this release asks whether a run of the
streak carries `error_details.alerted` (schedules.alerts._alerted_in_streak), which no run an
older release wrote does. Seen on real data: 885e84f's "every 5 min" import (alert after 1)
alerted at run 4; migrated, its next failure (streak 6) queued a second alert, e-mail and
webhook; the same from ccbc217. Every import failing past its threshold at the upgrade mailed
its owner again."""

import pytest

from schedules import services
from schedules.models import ImportRun, NotificationDelivery, ScheduledImport
from tests.factories import make_import
from tests.saved_runs_support import run_data_migration

pytestmark = pytest.mark.django_db

MIGRATION = "0039_streaks_the_previous_release_alerted"
# What this release writes on a failed run's error_details that an older one did not.
NEWER_KEYS = ("alerted", "streak", "alert_threshold")


def fail(imp):
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1
    )
    return services.finish_run(
        run, "failed", counts=services.RunCounts(), error="the server answered HTTP 404 Not Found"
    )


def as_the_previous_release_left_them(imp):
    """The import's runs as 885e84f wrote them: its alerts sent, nothing marked on the runs."""
    for run in ImportRun.objects.filter(scheduled_import=imp):
        details = {k: v for k, v in run.error_details.items() if k not in NEWER_KEYS}
        ImportRun.objects.filter(pk=run.pk).update(error_details=details)


def alerts(imp):
    return NotificationDelivery.objects.filter(scheduled_import=imp, event="alert").count()


def marks(imp):
    """(alerted, alert_threshold) of the import's runs, oldest first."""
    runs = ImportRun.objects.filter(scheduled_import=imp).order_by("finished_at", "pk")
    return [(r.error_details.get("alerted"), r.error_details.get("alert_threshold")) for r in runs]


def test_a_streak_alerted_before_the_upgrade_is_not_alerted_again(alice):
    # Given alice's import, alerted at its first failure by the previous release
    imp = make_import(alice, "https://example.com/p.csv", alert_after_failures=1)
    fail(imp)
    as_the_previous_release_left_them(imp)
    assert alerts(imp) == 1

    # When the upgrade migrates, and the same streak goes on with its next failure
    run_data_migration("schedules", MIGRATION)
    fail(imp)

    # Then the streak still has its one alert
    assert alerts(imp) == 1
    assert ScheduledImport.objects.get(pk=imp.pk).consecutive_failures == 2


def test_the_run_marked_is_the_one_the_previous_release_alerted_at(alice, bob):
    # Given alice's import, alerted after 2 failures, that has failed 4 times in a row
    alerted = make_import(alice, "https://example.com/p.csv", alert_after_failures=2)
    for _ in range(4):
        fail(alerted)
    # ... bob's, alerted after 2, whose first 3 failures of 5 retention has deleted
    thinned = make_import(
        bob, "https://example.com/q.csv", name="q", dataset="q", alert_after_failures=2
    )
    for _ in range(5):
        fail(thinned)
    ImportRun.objects.filter(
        pk__in=ImportRun.objects.filter(scheduled_import=thinned).order_by("pk").values("pk")[:3]
    ).delete()
    # ... and bob's, alerted after 3, that has failed twice
    below = make_import(
        bob, "https://example.com/r.csv", name="r", dataset="r", alert_after_failures=3
    )
    for _ in range(2):
        fail(below)
    for imp in (alerted, thinned, below):
        as_the_previous_release_left_them(imp)

    # When the upgrade migrates
    run_data_migration("schedules", MIGRATION)

    # Then alice's second failed run carries the mark this release writes when it alerts
    assert marks(alerted) == [(None, None), (True, 2), (None, None), (None, None)]
    # ... bob's oldest run kept of the streak does (the run that alerted is gone)
    assert marks(thinned) == [(True, 2), (None, None)]
    # ... and the streak below its threshold is left to alert when it gets there
    assert marks(below) == [(None, None), (None, None)]
    fail(below)
    assert alerts(below) == 1


def test_a_streak_this_release_has_not_alerted_yet_still_alerts(alice):
    # Given alice's import that failed 3 times under this release with alerts after 5
    imp = make_import(alice, "https://example.com/p.csv", alert_after_failures=5)
    for _ in range(3):
        fail(imp)
    # ... then lowered to 2: its alert is due at the next failure
    ScheduledImport.objects.filter(pk=imp.pk).update(alert_after_failures=2)

    # When the migration runs on this release's runs
    run_data_migration("schedules", MIGRATION)

    # Then it marks none of them, and the next failure alerts
    assert marks(imp) == [(None, None)] * 3
    fail(imp)
    assert alerts(imp) == 1
