"""The failure-streak alert and its counts follow the import's own counter, not the run log,
which retention thins unevenly (good runs after 30 days, failed ones after 90): with the good
run that ended a streak deleted, the next streak found the last one's alert and never alerted
(for up to 90 days), and its notifications counted both streaks as one."""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun, NotificationDelivery, ScheduledImport
from tasks import maintenance
from tests.factories import make_import

pytestmark = pytest.mark.django_db

SOURCE = "http://127.0.0.1:9/products.csv"


def end(imp, status):
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1
    )
    error = "" if status == "succeeded" else "the server answered HTTP 404 Not Found"
    return services.finish_run(run, status, counts=services.RunCounts(), error=error)


def age(days):
    then = timezone.now() - timedelta(days=days)
    ImportRun.objects.update(queued_at=then, started_at=then, finished_at=then)


def test_a_new_streak_alerts_after_retention_removed_the_success_that_ended_the_last(alice):
    imp = make_import(
        alice, SOURCE, alert_after_failures=2, notify_on=["failed"], notify_channels=["email"]
    )
    # A first streak, alerted, then a good run ends it.
    end(imp, "failed")
    end(imp, "failed")
    assert NotificationDelivery.objects.filter(event="alert").count() == 1
    end(imp, "succeeded")
    assert ScheduledImport.objects.get(pk=imp.pk).consecutive_failures == 0
    # 40 days later (e.g. a weekly import, or one paused for a month): retention deletes
    # the good run (30 days) and keeps the failed ones (90 days).
    age(40)
    maintenance.delete_old_runs()
    assert list(ImportRun.objects.values_list("status", flat=True)) == ["failed", "failed"]
    # A new streak of two failures.
    end(imp, "failed")
    second = end(imp, "failed")
    assert ScheduledImport.objects.get(pk=imp.pk).consecutive_failures == 2
    alerts = NotificationDelivery.objects.filter(event="alert", run=second)
    # Then the new streak, at the threshold, alerts
    assert alerts.count() == 1


def test_the_failed_notification_says_the_streak_the_counter_says(alice):
    from schedules import alerts

    imp = make_import(alice, SOURCE, alert_after_failures=0)
    end(imp, "failed")
    end(imp, "failed")
    end(imp, "succeeded")
    age(40)
    maintenance.delete_old_runs()
    run = end(imp, "failed")
    counter = ScheduledImport.objects.get(pk=imp.pk).consecutive_failures
    summary = alerts.run_summary(ImportRun.objects.get(pk=run.pk))
    assert summary["import"]["consecutive_failures"] == counter == 1


def test_a_streak_longer_than_the_retention_alerts_once(alice):
    # Retention deleted the run that alerted after 90 days, and the next failure of a streak
    # still under way took it for untold: an import failing every hour alerted its owner
    # again every 90 days.
    imp = make_import(alice, SOURCE, alert_after_failures=2)
    end(imp, "failed")
    alerted = end(imp, "failed")
    end(imp, "failed")
    assert NotificationDelivery.objects.filter(event="alert").count() == 1
    age(100)
    end(imp, "failed")

    maintenance.delete_old_runs()

    assert ImportRun.objects.filter(pk=alerted.pk).exists()
    assert ImportRun.objects.filter(status="failed").count() == 2  # the alerted one, the last
    end(imp, "failed")
    assert NotificationDelivery.objects.filter(event="alert").count() == 1
    # Once the streak is over, the run that alerted goes with the others of its age
    end(imp, "succeeded")
    maintenance.delete_old_runs()
    assert not ImportRun.objects.filter(pk=alerted.pk).exists()
