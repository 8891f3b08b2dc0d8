"""An import rescheduled (another cron rule, time zone or interval, cron <-> interval) or
deleted deletes the django-celery-beat schedule row it leaves, unless another beat entry uses
it: an operator's own entry keeps its row.

Regression (growth hunt): the row was never deleted, by an edit nor by the import's deletion.
200 imports edited 7 times each, half deleted, left 360 crontab and 250 interval rows that no
entry used, every one of them an option in the beat admin's forms (565 KB and 2.4 s a page at
4,000 rows).
"""

from __future__ import annotations

import pytest
from django.db.models import Exists, OuterRef
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from schedules import services
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def unused(model) -> list[str]:
    """The rows of `model` no beat entry uses, as the admin lists them."""
    field = "crontab" if model is CrontabSchedule else "interval"
    used = PeriodicTask.objects.filter(**{field: OuterRef("pk")})
    return [str(row) for row in model.objects.filter(~Exists(used))]


def cron(rule: str, **more: str) -> dict[str, str | None]:
    return {"schedule_type": "cron", "cron_expression": rule, "interval_seconds": None, **more}


def every(seconds: int) -> dict[str, str | int]:
    return {"schedule_type": "interval", "interval_seconds": seconds, "cron_expression": ""}


def test_an_import_rescheduled_or_deleted_leaves_no_schedule_row_unused(alice):
    # Given an operator's own entry at 03:00 UTC and hourly, and imports on those schedules
    # and on schedules of their own
    at_three = CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")
    hourly = IntervalSchedule.objects.create(every=3600, period="seconds")
    theirs = PeriodicTask.objects.create(name="operator's", task="x.y", crontab=at_three)
    theirs_hourly = PeriodicTask.objects.create(name="operator's hourly", task="x.y",
                                                interval=hourly)  # fmt: skip
    shared = make_import(alice, SOURCE, name="shared", dataset="a", **cron("0 3 * * *"))
    shared_hourly = make_import(alice, SOURCE, name="hourly", dataset="b", **every(3600))
    nightly = make_import(alice, SOURCE, name="nightly", dataset="c", **cron("15 4 * * *"))
    often = make_import(alice, SOURCE, name="often", dataset="d", **every(900))
    gone = make_import(alice, SOURCE, name="gone", dataset="e", **cron("45 5 * * 1"))
    gone_too = make_import(alice, SOURCE, name="gone too", dataset="f", **every(1200))
    assert shared.periodic_task.crontab_id == at_three.pk  # (the operator's row, shared)

    # When each is rescheduled (rule, time zone, cron <-> interval), and two are deleted
    services.update_import(shared, **every(600))
    services.update_import(shared_hourly, **cron("30 6 * * *"))
    nightly = services.update_import(nightly, cron_expression="20 4 * * *")
    nightly = services.update_import(nightly, timezone="Europe/Paris")
    often = services.update_import(often, interval_seconds=1800)
    services.update_import(often, **cron("10 1 * * *"))
    services.delete_import(gone)
    services.delete_import(gone_too)

    # Then no crontab or interval row is left that no entry uses
    assert unused(CrontabSchedule) == [] and unused(IntervalSchedule) == []
    # ... and the operator's entries keep their rows
    theirs.refresh_from_db()
    theirs_hourly.refresh_from_db()
    assert (theirs.crontab_id, theirs_hourly.interval_id) == (at_three.pk, hourly.pk)
