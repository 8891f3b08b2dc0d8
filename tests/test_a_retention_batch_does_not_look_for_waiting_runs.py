"""Retention deletes ended runs only, which never wait again (a retry is a new run): its
batches do not ask for the waiting runs' tasks a deletion tells Flower of (services.delete_runs,
`ended_only`). Each batch asked, 15 ms of a batch of 5,000 at 1,000,000 runs
(tests/bench/bench_deleted_runs_tasks_at_scale.py). Any other deletion still asks."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import maintenance
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def asked_for_waiting_tasks(queries) -> bool:
    return any("celery_task_id" in q["sql"] and "SELECT" in q["sql"] for q in queries)


def test_a_retention_pass_deletes_old_runs_without_looking_for_waiting_ones(alice, settings):
    # Given alice's runs from two months ago, ended
    settings.RUN_RETENTION_DAYS = 30
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    for status in ("succeeded", "partial", "skipped"):
        ImportRun.objects.create(
            scheduled_import=imp,
            trigger="schedule",
            status=status,
            queued_at=timezone.now() - timedelta(days=60),
        )

    # When retention runs
    with CaptureQueriesContext(connection) as queries:
        result = maintenance.delete_old_runs()

    # Then they went, and no statement looked for waiting runs' tasks
    assert result["deleted"] == 3
    assert not asked_for_waiting_tasks(queries.captured_queries)


def test_any_other_deletion_of_runs_still_looks_for_waiting_ones(alice):
    # Given alice's run waiting in its backoff
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    ImportRun.objects.create(
        scheduled_import=imp, trigger="manual", status="retrying", celery_task_id="t-1"
    )

    # When her import's runs are deleted
    with CaptureQueriesContext(connection) as queries:
        services.delete_runs(imp.runs.all())

    # Then the deletion asked for the waiting runs' tasks (to tell Flower they are over)
    assert asked_for_waiting_tasks(queries.captured_queries)
