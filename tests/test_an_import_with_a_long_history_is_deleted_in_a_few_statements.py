"""Deleting an import deletes its runs in a few statements, whatever their number.

Django's cascade read every run into memory (to set to NULL what points at it) and deleted them
a hundred at a time: an import of a year of minute runs (500,000) was still at it when gunicorn
killed the request after 30 s, and could never be deleted (services.runs_deletion).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from schedules import services
from schedules.models import (
    Dataset,
    ImportRun,
    NotificationDelivery,
    Record,
    RunTally,
    ScheduledImport,
)
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_the_import_goes_with_its_runs_and_what_pointed_at_them_is_cleared(alice):
    # Given an import with runs, a retry of one, a delivery about one, its dataset's last
    # applied run, and a record written by one
    imp = make_import(alice, SOURCE)
    failed = make_run(imp, "failed")
    retry = make_run(imp, "succeeded", retry_of=failed)
    NotificationDelivery.objects.create(
        scheduled_import=imp, run=failed, event="failed", channel="email"
    )
    Dataset.objects.filter(pk=imp.dataset_id).update(applied_run=retry)
    record = Record.objects.create(
        dataset=imp.dataset, key="A-1", data={}, content_hash=0, first_seen_run=retry
    )
    # and another import, whose runs and delivery stay
    other = make_import(alice, SOURCE, name="other", dataset="other")
    kept = make_run(other, "failed")
    NotificationDelivery.objects.create(
        scheduled_import=other, run=kept, event="failed", channel="email"
    )
    task_id = imp.periodic_task_id

    # When alice deletes the import
    response = client_for(alice).delete(f"{API}/imports/{imp.pk}/")

    # Then it is gone with its runs, deliveries, tallies and beat entry
    assert response.status_code == 204
    assert not ScheduledImport.objects.filter(pk=imp.pk).exists()
    assert not ImportRun.objects.filter(scheduled_import_id=imp.pk).exists()
    assert not NotificationDelivery.objects.filter(scheduled_import_id=imp.pk).exists()
    assert not RunTally.objects.filter(scheduled_import_id=imp.pk).exists()
    assert not PeriodicTask.objects.filter(pk=task_id).exists()
    # the dataset forgets its applied run; the record keeps the id of the run that wrote it
    assert Dataset.objects.get(pk=imp.dataset_id).applied_run_id is None
    record.refresh_from_db()
    assert record.first_seen_run_id == retry.pk
    # and the other import keeps everything
    assert ImportRun.objects.filter(pk=kept.pk).exists()
    assert NotificationDelivery.objects.get(scheduled_import=other).run_id == kept.pk


def test_no_statement_reads_the_runs_however_many(alice):
    imp = make_import(alice, SOURCE)
    ImportRun.objects.bulk_create(
        ImportRun(scheduled_import=imp, trigger="schedule", status="succeeded")
        for _ in range(2_000)
    )

    with CaptureQueriesContext(connection) as statements:
        services.delete_import(imp)

    # The cascade's reads of the runs, and its deletes of a hundred at a time, are gone (the
    # lock of the runs' imports, in id order, reads imports).
    run_table = ImportRun._meta.db_table
    reads = [q["sql"] for q in statements if q["sql"].startswith(f'SELECT "{run_table}".')]
    deletes = [q["sql"] for q in statements if q["sql"].startswith(f'DELETE FROM "{run_table}"')]
    assert len(reads) <= 1 and len(deletes) <= 1, (reads, deletes)
    assert len(statements) < 30
    assert not ImportRun.objects.filter(scheduled_import_id=imp.pk).exists()


def test_the_statements_follow_what_the_models_say_of_each_reference():
    statements = services.runs_deletion()

    # SET_NULL: the dataset's applied run, a delivery's run, a retry of another import's run
    assert len(statements) == 4
    assert statements[-1].startswith('DELETE FROM "schedules_importrun"')
    nulled = " ".join(statements[:-1])
    assert '"applied_run_id" = NULL' in nulled and '"run_id" = NULL' in nulled
    assert '"retry_of_id" = NULL' in nulled
    # DO_NOTHING: a record keeps the ids of its runs
    assert "first_seen_run" not in nulled and "last_changed_run" not in nulled
