"""A failed run's task state (FAILURE) and a waiting run's (RETRY) keep their words and no
traceback: the run log holds what went wrong (and, for staff, the traceback of an error it could
not explain), and the runner's frames were 0.8-1.1 kB of each such state, kept a day in Redis
(some 30 MB at 10,000 imports hourly). Another task's stored traceback keeps its end only."""

import uuid

import pytest
from celery.result import AsyncResult

from project.celery import app
from schedules.models import ImportRun
from tasks.tasks import execute_run
from tests.conftest import Route
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failed_runs_task_keeps_its_words_and_no_traceback(alice, csv_server):
    # Given an import whose file is gone
    csv_server.routes["/gone.csv"] = Route(b"not here", status=404)
    imp = make_import(alice, csv_server.base_url + "/gone.csv")
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="api", celery_task_id=str(uuid.uuid4())
    )

    # When its run's message is handled
    execute_run.apply(args=[run.pk], task_id=run.celery_task_id)

    # Then the run failed, its task FAILURE in the run's words, with no traceback stored
    run.refresh_from_db()
    assert run.status == "failed"
    result = AsyncResult(run.celery_task_id)
    assert result.state == "FAILURE"
    assert f"run {run.pk} failed: " in str(result.info)
    assert result.traceback is None


def test_another_tasks_stored_traceback_keeps_its_end():
    # Given a task of importbeat's whose error has a long traceback
    @app.task(name="tests.fails_deep", shared=False)
    def fails_deep():
        pass

    traceback = "Traceback (most recent call last):\n" + "  a frame\n" * 2000 + "ValueError: x\n"

    # When its failure is stored
    task_id = str(uuid.uuid4())
    fails_deep.backend.mark_as_failure(task_id, ValueError("x"), traceback)

    # Then its end is kept, where the error was raised, and not the whole of it
    kept = AsyncResult(task_id).traceback
    assert kept.endswith("ValueError: x\n")
    assert len(kept) <= 2_000 + 2 < len(traceback)  # (ImportbeatTask.stored_traceback_chars)
