"""The hourly retention deletes django-celery-beat's schedule rows that no beat entry uses: those
left behind before reschedules and deletions deleted them, and those a save moving off one had
to pass over because another save was picking it. Rows an entry uses stay (an import's, a
maintenance job's, an operator's).

Regression (growth hunt): nothing ever deleted one, and every such row was an option of the
beat admin's entry forms.
"""

from __future__ import annotations

import pytest
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from schedules import models
from tasks import maintenance
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_retention_deletes_the_schedule_rows_no_entry_uses(alice, monkeypatch):
    # Given rows no entry uses (more than a batch of them), among rows an import's and an
    # operator's entries use
    monkeypatch.setattr(models, "DELETE_SCHEDULE_ROWS_BATCH", 40, raising=False)
    imp = make_import(alice, SOURCE, interval_seconds=3600)
    CrontabSchedule.objects.bulk_create(
        CrontabSchedule(minute=str(n % 60), hour=str(n % 24), day_of_week=str(n % 7))
        for n in range(150)
    )
    IntervalSchedule.objects.bulk_create(
        IntervalSchedule(every=n + 1, period="minutes") for n in range(90)
    )
    operators = CrontabSchedule.objects.create(minute="5", hour="5")
    theirs = PeriodicTask.objects.create(name="operator's", task="x.y", crontab=operators)

    # When the hourly retention runs
    deleted = maintenance.delete_old_runs()

    # Then the 240 unused rows are gone, the rows the entries use stay, and the job counts them
    assert list(CrontabSchedule.objects.values_list("pk", flat=True)) == [operators.pk]
    assert list(IntervalSchedule.objects.values_list("pk", flat=True)) == [
        imp.periodic_task.interval_id
    ]
    assert deleted["schedule_rows"] == 240
    theirs.refresh_from_db()
    assert theirs.crontab_id == operators.pk
