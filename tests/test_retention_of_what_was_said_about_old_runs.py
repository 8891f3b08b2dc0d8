"""Retention takes what was said about runs with them, by the same ages (issue 15: nothing true
only at small scale). Before, the notification log and the history's run events were never
deleted: an import notifying on every success every minute added half a million deliveries a
year, and each API trigger a history entry, for ever."""

from datetime import timedelta

import pytest
from auditlog.models import LogEntry
from django.utils import timezone

from schedules import history, reconcile
from schedules.models import NotificationDelivery, ScheduledImport
from tasks import maintenance
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def ages(settings):
    settings.RUN_RETENTION_DAYS = 30
    settings.FAILED_RUN_RETENTION_DAYS = 90


def delivery_aged(imp, days: int, status: str) -> NotificationDelivery:
    return NotificationDelivery.objects.create(
        scheduled_import=imp, event="succeeded", channel="email", target="a@example.com",
        status=status, created_at=timezone.now() - timedelta(days=days),
    )  # fmt: skip


def event_aged(imp, days: int, event: str) -> LogEntry:
    entry = history.record_event(imp, event, None, run=1)
    LogEntry.objects.filter(pk=entry.pk).update(timestamp=timezone.now() - timedelta(days=days))
    return entry


def test_old_deliveries_go_failed_ones_later_and_unsent_ones_never(alice, ages):
    # Given deliveries of every age and status
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    keep = [
        delivery_aged(imp, 29, "delivered"),
        delivery_aged(imp, 60, "failed"),
        delivery_aged(imp, 400, "pending"),
        delivery_aged(imp, 400, "retrying"),
    ]
    gone = [
        delivery_aged(imp, 31, "delivered"),
        delivery_aged(imp, 31, "skipped"),
        delivery_aged(imp, 91, "failed"),
    ]

    # When retention runs
    result = maintenance.delete_old_runs()

    # Then the old ones are gone, failed ones after the failed runs' age, unsent ones never
    assert result["deliveries"] == len(gone)
    assert set(NotificationDelivery.objects.values_list("pk", flat=True)) == {d.pk for d in keep}


def test_old_run_events_go_and_an_imports_changes_stay(alice, ages):
    # Given an import created long ago (its "create" change) and run events of every age
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    LogEntry.objects.update(timestamp=timezone.now() - timedelta(days=400))
    changes = set(LogEntry.objects.values_list("pk", flat=True))
    assert changes, "creating an import is in its history"
    keep = [
        event_aged(imp, 29, "run triggered"),
        event_aged(imp, 400, "host key accepted"),
    ]
    gone = [event_aged(imp, 31, event) for event in history.RUN_EVENTS]

    # When retention runs
    result = maintenance.delete_old_runs()

    # Then the run events older than the runs' age are gone; changes and other events stay
    assert result["events"] == len(gone)
    remaining = set(LogEntry.objects.values_list("pk", flat=True))
    assert remaining == changes | {entry.pk for entry in keep}


def test_the_notice_of_a_late_streak_outliving_retention_stays_so_it_is_not_told_again(alice, ages):
    # Regression (review2 bug 1): a quarterly import late since January had its `late` notice
    # deleted after 30 days, and reconciliation, finding the streak untold, e-mailed the owner
    # again every month of that one streak.
    # Given an import late for 40 days, told then, with the notice of an earlier streak too
    late = make_import(alice, "http://127.0.0.1/late.csv")
    ScheduledImport.objects.filter(pk=late.pk).update(
        late_since=timezone.now() - timedelta(days=40, minutes=5)
    )
    told = late_delivery_aged(late, 40, "delivered")
    earlier_streak = late_delivery_aged(late, 50, "delivered")
    # and an import on time again whose old streak's notice is as old
    on_time = make_import(alice, "http://127.0.0.1/t.csv", name="on time", dataset="other")
    over = late_delivery_aged(on_time, 40, "delivered")

    # When retention runs, then reconciliation looks for late streaks nobody was told of
    maintenance.delete_old_runs()
    untold = reconcile.tell_late_owners_not_told(timezone.now())

    # Then the streak under way keeps its notice and is not told again; the others' go
    remaining = set(NotificationDelivery.objects.values_list("pk", flat=True))
    assert told.pk in remaining
    assert earlier_streak.pk not in remaining and over.pk not in remaining
    assert untold == 0
    assert NotificationDelivery.objects.filter(event="late").count() == 1


def late_delivery_aged(imp, days: int, status: str) -> NotificationDelivery:
    return NotificationDelivery.objects.create(
        scheduled_import=imp, event="late", channel="email", target="a@example.com",
        status=status, created_at=timezone.now() - timedelta(days=days),
    )  # fmt: skip
