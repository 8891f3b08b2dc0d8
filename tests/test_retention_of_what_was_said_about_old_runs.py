"""Retention takes what was said about runs with them, by the same ages (issue 15: nothing true
only at small scale). Before, the notification log and the history's run events were never
deleted: an import notifying on every success every minute added half a million deliveries a
year, and each API trigger a history entry, for ever."""

from datetime import timedelta

import pytest
from auditlog.models import LogEntry
from django.utils import timezone

from schedules import history
from schedules.models import NotificationDelivery
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
