"""An import's entry in the Periodic tasks admin shows the import's last run (hunt "surfaces",
bug 4): imports fire from their own next tick, not through beat's DatabaseScheduler, so the
entry's own `last_run_at` stays empty and the page said the import had never run."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from schedules.models import ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

TASKS = "/admin/django_celery_beat/periodictask/"
RAN_AT = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


def test_an_imports_entry_shows_when_the_import_last_ran(admin_client, alice):
    # Given an import in Berlin that last ran at 10:30 UTC, whose beat entry never ran
    imp = make_import(alice, SOURCE, timezone="Europe/Berlin")
    ScheduledImport.objects.filter(pk=imp.pk).update(last_run_at=RAN_AT)
    task = PeriodicTask.objects.get(pk=imp.periodic_task_id)
    assert task.last_run_at is None

    # When the entries are listed, and the import's entry shown
    listed = admin_client.get(TASKS).content.decode()
    page = admin_client.get(f"{TASKS}{task.pk}/change/").content.decode()

    # Then both say when the import ran, in its zone
    row = listed[listed.index(f"/admin/schedules/scheduledimport/{imp.pk}/change/") :]
    row = row[: row.index("</tr>")]
    assert "2026-03-02 11:30:00 CET" in row
    assert "2026-03-02 11:30:00 CET" in page
    # and django-celery-beat's own row is left as beat keeps it
    task.refresh_from_db()
    assert (task.last_run_at, task.total_run_count) == (None, 0)


def test_an_entry_of_no_import_shows_its_own_last_run(admin_client):
    from django_celery_beat.models import IntervalSchedule

    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.create(
        name="someone else's", task="other.job", interval=every_hour, last_run_at=RAN_AT
    )

    listed = admin_client.get(TASKS).content.decode()

    row = listed[listed.index("someone else&#x27;s") :]
    assert "2026-03-02 10:30:00 UTC" in row[: row.index("</tr>")]


def queries_of_the_list(admin_client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert admin_client.get(TASKS).status_code == 200
    return len(captured)


def test_the_entries_list_costs_the_same_queries_for_2_or_12_imports(admin_client, alice):
    # Regression (ops hunt): list_select_related was never applied (django-celery-beat's
    # queryset joins already): 108 queries for a page of 100
    for n in range(2):
        make_import(alice, SOURCE, name=f"i{n}", dataset=f"d{n}")
    few = queries_of_the_list(admin_client)

    for n in range(2, 12):
        make_import(alice, SOURCE, name=f"i{n}", dataset=f"d{n}")
    many = queries_of_the_list(admin_client)

    assert many == few, f"{few} queries for 2 imports, {many} for 12"
