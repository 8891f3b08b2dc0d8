"""Retention: runs older than RUN_RETENTION_DAYS are deleted, failed and timed-out ones only
after FAILED_RUN_RETENTION_DAYS, active ones never; beat has the job on its schedule."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from schedules.models import ImportRun, Record
from tasks import maintenance
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def run_aged(imp, days: int, status: str) -> ImportRun:
    return ImportRun.objects.create(
        scheduled_import=imp,
        trigger="schedule",
        status=status,
        queued_at=timezone.now() - timedelta(days=days),
    )


def test_it_deletes_old_runs_keeping_failed_ones_longer_and_active_ones_always(alice, settings):
    settings.RUN_RETENTION_DAYS = 30
    settings.FAILED_RUN_RETENTION_DAYS = 90
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    keep = [
        run_aged(imp, 29, "succeeded"),
        run_aged(imp, 60, "failed"),
        run_aged(imp, 89, "timed_out"),
        run_aged(imp, 400, "running"),
        run_aged(imp, 400, "queued"),
    ]
    gone = [
        run_aged(imp, 31, "succeeded"),
        run_aged(imp, 31, "partial"),
        run_aged(imp, 31, "skipped"),
        run_aged(imp, 91, "failed"),
        run_aged(imp, 91, "timed_out"),
    ]
    record = Record.objects.create(
        dataset=imp.dataset, key="A-1", data={}, content_hash=0, first_seen_run=gone[0]
    )

    result = maintenance.delete_old_runs()

    assert result["deleted"] == len(gone)
    remaining = set(ImportRun.objects.values_list("pk", flat=True))
    assert remaining == {r.pk for r in keep}
    # Records keep pointing at the ids of runs retention removed (no cascade, no rewrite).
    assert Record.objects.get(pk=record.pk).first_seen_run_id == gone[0].pk


def test_beat_has_the_retention_and_sweep_jobs_on_its_schedule():
    schedule = settings.CELERY_BEAT_SCHEDULE
    tasks = {entry["task"] for entry in schedule.values()}
    assert {"importbeat.delete_old_runs", "importbeat.sweep_runs"} <= tasks
    from project.celery import app

    app.loader.import_default_modules()
    assert {"importbeat.delete_old_runs", "importbeat.sweep_runs"} <= set(app.tasks)
