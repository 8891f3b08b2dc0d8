"""An import's django-celery-beat entry is created, re-scheduled, paused and deleted with it."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from schedules import services
from schedules.models import ScheduledImport
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_creating_an_interval_import_creates_an_enabled_periodic_task(alice):
    imp = make_import(alice, "https://example.com/p.csv", interval_seconds=300)

    task = PeriodicTask.objects.get(pk=imp.periodic_task_id)
    assert task.task == "importbeat.dispatch_scheduled_import"
    assert json.loads(task.args) == [imp.pk]
    assert task.enabled
    assert task.interval.every == 300 and task.interval.period == "seconds"
    assert task.crontab is None
    assert imp.next_run_at is not None


def test_an_import_whose_schedule_row_is_there_twice_is_still_saved(alice):
    # Given two imports saved at once with a new interval (or an operator adding the same
    # interval and rule in django-celery-beat's admin): the schedule rows are there twice
    imp = make_import(alice, "https://example.com/p.csv", interval_seconds=3600)
    IntervalSchedule.objects.create(every=3600, period="seconds")
    cron = make_import(
        alice, "https://example.com/q.csv", name="q", dataset="q", schedule_type="cron",
        cron_expression="0 3 * * *", interval_seconds=None,
    )  # fmt: skip
    CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")

    # When they are edited, paused and resumed, and another import takes the same schedule
    services.update_import(imp, description="edited")
    services.pause_import(imp)
    services.resume_import(cron)
    services.update_import(cron, description="edited")
    other = make_import(alice, "https://example.com/r.csv", name="r", dataset="r",
                        interval_seconds=3600)  # fmt: skip

    # Then each keeps the first row (get_or_create raised on two, a 500 at every save)
    assert imp.periodic_task.interval_id == other.periodic_task.interval_id
    assert (
        cron.periodic_task.crontab_id
        == CrontabSchedule.objects.order_by("pk").filter(hour="3").first().pk
    )


def test_a_cron_import_gets_a_crontab_in_its_own_timezone(alice):
    imp = make_import(
        alice,
        "https://example.com/p.csv",
        schedule_type="cron",
        cron_expression="30 2 * * 1-5",
        interval_seconds=None,
        timezone="Europe/Berlin",
    )

    crontab = PeriodicTask.objects.get(pk=imp.periodic_task_id).crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week) == ("30", "2", "1-5")
    assert str(crontab.timezone) == "Europe/Berlin"


def test_changing_the_schedule_reschedules_the_same_periodic_task(alice):
    imp = make_import(alice, "https://example.com/p.csv", interval_seconds=300)
    task_id = imp.periodic_task_id

    services.update_import(
        imp, schedule_type="cron", cron_expression="0 6 * * *", interval_seconds=None
    )

    task = PeriodicTask.objects.get(pk=task_id)
    assert task.interval is None
    assert task.crontab == CrontabSchedule.objects.get(minute="0", hour="6", timezone="UTC")
    assert ScheduledImport.objects.get(pk=imp.pk).periodic_task_id == task_id


def test_pausing_disables_and_resuming_enables_the_periodic_task(alice):
    imp = make_import(alice, "https://example.com/p.csv")

    services.pause_import(imp)
    assert not PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    assert ScheduledImport.objects.get(pk=imp.pk).next_run_at is None

    services.resume_import(imp)
    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled


def test_saving_the_model_directly_also_syncs_beat(alice):
    imp = make_import(alice, "https://example.com/p.csv")

    imp.status = ScheduledImport.Status.PAUSED
    imp.save()

    assert not PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled


@pytest.mark.parametrize("how", ["service", "queryset"])
def test_deleting_the_import_deletes_its_periodic_task(alice, how):
    imp = make_import(alice, "https://example.com/p.csv")
    task_id = imp.periodic_task_id

    if how == "service":
        services.delete_import(imp)
    else:
        ScheduledImport.objects.filter(pk=imp.pk).delete()

    assert not PeriodicTask.objects.filter(pk=task_id).exists()


@pytest.mark.parametrize("mishap", ["deleted", "disabled"])
def test_a_change_that_changes_nothing_still_mends_its_beat_entry(alice, mishap):
    # Given an active import whose entry an operator deleted or disabled in the beat admin
    imp = make_import(alice, "https://example.com/p.csv", interval_seconds=300)
    version = services.import_version(imp)
    entry = PeriodicTask.objects.filter(pk=imp.periodic_task_id)
    entry.delete() if mishap == "deleted" else entry.update(enabled=False)

    # When its owner saves it again as it is
    services.update_import(ScheduledImport.objects.get(pk=imp.pk), description=imp.description)

    # Then its entry is there and enabled again (a change of nothing returned at once, so
    # "save it again" mended nothing), and the import keeps its version
    imp = ScheduledImport.objects.get(pk=imp.pk)
    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    assert services.import_version(imp) == version


@pytest.mark.parametrize("mishap", ["deleted", "disabled"])
@pytest.mark.parametrize("state", ["late", "beat behind"])
def test_an_unchanged_save_that_mends_the_entry_keeps_the_due_tick(alice, mishap, state):
    # Regression (review of this round): the entry mended as a changed schedule, the ticks
    # started afresh from now; beat down meanwhile, its missed ticks were never counted, no
    # catch-up ran, and a late import saved so was shown on time without having run.
    # Given an hourly import late since a tick it missed, or whose ticks beat has not reached
    imp = make_import(alice, "https://example.com/p.csv", interval_seconds=3600)
    late_since = timezone.now() - timedelta(hours=1) if state == "late" else None
    due = imp.next_run_at if state == "late" else imp.next_run_at - timedelta(hours=2)
    ScheduledImport.objects.filter(pk=imp.pk).update(next_run_at=due, late_since=late_since)
    entry = PeriodicTask.objects.filter(pk=imp.periodic_task_id)
    entry.delete() if mishap == "deleted" else entry.update(enabled=False)

    # When it is saved again as it is
    services.update_import(ScheduledImport.objects.get(pk=imp.pk), description=imp.description)

    # Then its entry is mended, and its due tick and late state are as they were
    imp = ScheduledImport.objects.get(pk=imp.pk)
    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    assert (imp.next_run_at, imp.late_since) == (due, late_since)
